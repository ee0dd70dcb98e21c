"""Sleep-time compute in the runtime: contexts, their precompute jobs, questions over them.

``Runtime`` delegates here. A context is stored with a precompute job (kind
``precompute``); a worker runs it like any job. Side effects on the context (storing a
memory, counting a question) are keyed by job id, so a job that is retried or taken over
by another worker never stores twice or counts twice.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from pydantic import ValidationError
from redis.exceptions import RedisError

from orchestrator.core.budget import Budget, Usage
from orchestrator.core.errors import (
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    PromptTooLongError,
    TTCError,
    describe_problems,
)
from orchestrator.core.rendering import ChatRenderer
from orchestrator.core.session import Session
from orchestrator.core.store import JobRecord, Store
from orchestrator.core.store.api_keys import ApiKey
from orchestrator.core.store.contexts import PRECOMPUTE_CANCELLED, ContextRecord
from orchestrator.core.store.jobs import new_job_id
from strategies.base import StrategyResult
from strategies.sleep_time import SERVICE_ONLY, SleepParams, with_memory

log = logging.getLogger(__name__)
CONTEXT_POLL_S = 0.25
WAIT_SHARE = 0.5  # a question waits for a memory at most this share of its deadline, then answers without


class ContextKeeper:
    """Creates contexts, runs their precompute, and asks questions over them."""

    def __init__(self, store: Store, renderer: ChatRenderer, max_model_len: int) -> None:
        self.store = store
        self.renderer = renderer
        self.max_model_len = max_model_len

    async def create(
        self,
        text: str,
        budget: Budget,
        params: dict[str, Any] | None,
        api_key: ApiKey | None,
        *,
        context_id: str | None = None,
        enqueue: bool = False,
    ) -> tuple[ContextRecord, JobRecord]:
        """Store a context and its (queued) precompute job, both owned by ``api_key`` and its
        budget reserved against the key's quota; the caller enqueues the job id."""
        if not text.strip():
            raise InvalidRequestError("the context text is empty")
        self._check_fits(text)
        parsed = client_sleep_params(params)
        owner = api_key.id if api_key else None
        context = ContextRecord(text=text, sleep_budget=budget, params=parsed.model_dump(), api_key_id=owner)
        if context_id is not None:
            context.id = context_id
        job = JobRecord(
            question=text,
            strategy="sleep_time",
            params=context.params,
            budget=budget,
            kind="precompute",
            context_id=context.id,
            api_key_id=owner,
        )
        context.job_id = job.id
        quota = api_key.quota_tokens if api_key else None
        await self.store.create_context_with_job(context, job, quota, enqueue=enqueue)
        return context, job

    async def extend(
        self,
        context: ContextRecord,
        more: str,
        budget: Budget,
        api_key: ApiKey | None,
        *,
        job_id: str | None = None,
        enqueue: bool = False,
    ) -> tuple[ContextRecord, JobRecord]:
        """Append ``more`` to ``context`` (as read for the caller, who owns it) and store (and,
        ``enqueue``, queue) its re-sleep: the old facts still grounded in the new text are kept, and
        the sleep looks for what the new text implies. Questions keep using the old memory until
        the new one is stored."""
        if not more.strip():
            raise InvalidRequestError("the text to append is empty")
        owner = api_key.id if api_key else None
        self._check_fits(f"{context.text}\n{more}")
        params = {**context.params, "prior_facts": (context.memory or "").splitlines(), "changed": more}
        job = JobRecord(
            id=job_id or new_job_id(),
            question="",  # the whole new text, set when the context is stored with it
            strategy="sleep_time",
            params=SleepParams.model_validate(params).model_dump(),
            budget=budget,
            kind="precompute",
            context_id=context.id,
            api_key_id=owner,
        )
        quota = api_key.quota_tokens if api_key else None
        context = await self.store.extend_context(context.id, owner, more, job, quota, enqueue=enqueue)
        return context, job

    async def delete(self, context_id: str, api_key: ApiKey | None) -> None:
        """Remove a context the caller owns, and its memory; a precompute still queued or running is
        cancelled first (its worker stops it as it stops any cancelled job)."""
        context = await self.store.get_owned_context(context_id, api_key.id if api_key else None)
        if context.status in ("queued", "computing") and context.job_id:
            await self.store.request_cancel(context.job_id)
        await self.store.delete_context(context.id)

    def _check_fits(self, text: str) -> None:
        if self.renderer.count_tokens(text) > self.max_model_len // 2:
            raise PromptTooLongError(
                f"the context is longer than half the model's context ({self.max_model_len} tokens): "
                "questions over it would not fit; shorten it or split it into several contexts"
            )

    async def starting(self, job: JobRecord) -> None:
        """A precompute job begins: its context shows it is computing (the ``sleep_time`` strategy
        then runs like any other)."""
        await self.store.mark_context_computing(job.context_id)

    async def question(self, job: JobRecord, session: Session) -> tuple[str, dict[str, Any]]:
        """The question over its context, with the memory's facts closest to it (all of them when
        the context asks for all), if a memory is stored — or, with ``"wait"``, once it is.

        A wait takes at most half of the request's deadline; then the question is answered with
        the memory stored so far (the one before a re-sleep), or none. Facts too long for the
        model are left out too.
        """
        context = await self.store.get_context(job.context_id)
        if job.context_memory == "wait" and context.status in ("queued", "computing"):
            context = await self._wait_for_memory(context, session)
        facts = (context.memory or "").splitlines() if context.memory_version else []
        chosen = await self._retrieved(facts, job.question, context.params.get("retrieve", 0), session)
        used: dict[str, Any] = {"id": context.id, "status": context.status, "memory_version": None}
        asked = with_memory(context.text, chosen, job.question)
        if chosen and self.renderer.count_tokens(asked) > self.max_model_len * 3 // 4:
            used["left_out"] = "the facts do not fit in the model's context with the question"
            chosen, asked = [], with_memory(context.text, None, job.question)
        if chosen:
            used |= {"memory_version": context.memory_version, "facts_used": len(chosen), "facts": len(facts)}
        await session.emit({"type": "context", **used})
        return asked, used

    async def _retrieved(self, facts: list[str], question: str, count: int, session: Session) -> list[str]:
        """The ``count`` facts closest in meaning to the question, in memory order (later facts build on
        earlier ones); all of them when there are no more than ``count`` or ``count`` is 0."""
        if not count or len(facts) <= count:
            return facts
        try:
            embedder = session.embedder
        except ConfigurationError:
            return facts  # no embedder in this process: every fact, as before retrieval
        rows = await embedder.embed([question, *facts])
        similarity = rows[1:] @ rows[0]
        closest = sorted(range(len(facts)), key=lambda index: -float(similarity[index]))[:count]
        return [facts[index] for index in sorted(closest)]

    async def _wait_for_memory(self, context: ContextRecord, session: Session) -> ContextRecord:
        remaining = session.meter.remaining_seconds()
        with anyio.move_on_after(remaining * WAIT_SHARE if remaining is not None else None):
            while context.status in ("queued", "computing"):
                await anyio.sleep(CONTEXT_POLL_S)
                context = await self.store.get_context(context.id)
        return context

    async def with_amortised_sleep(self, job: JobRecord, result: StrategyResult, usage: Usage) -> Usage:
        """A question answered with its context's memory is counted (once per job), and its usage
        carries the context's sleep tokens and their share per question so far. Bookkeeping
        problems are logged: the answer still stands, without the amortised figures."""
        if not (result.trace.get("context") or {}).get("memory_version"):
            return usage
        try:
            context = await self.store.count_query(job.context_id, job.id)
        except (TTCError, RedisError, OSError) as problem:
            log.warning("counting job %s's question on its context failed: %s", job.id, problem)
            return usage
        amortised = round(context.sleep_tokens / max(1, context.queries), 3)
        return usage.model_copy(update={"sleep_time_tokens": context.sleep_tokens, "amortised_sleep_tokens": amortised})

    async def settle(self, job: JobRecord) -> None:
        """After a precompute job's outcome is decided: store its memory, or record its failure.
        Bookkeeping problems are logged: the job's own outcome still stands."""
        if job.kind != "precompute":
            return
        error = None if job.status == "succeeded" else job.error or PRECOMPUTE_CANCELLED
        try:
            await self.store.end_precompute(job.context_id, job.id, job.output, job.usage, error)
        except NotFoundError:
            log.info("context %s was deleted while job %s computed its memory", job.context_id, job.id)
        except (TTCError, RedisError, OSError) as problem:
            log.warning("context bookkeeping for job %s failed: %s", job.id, problem)


def client_sleep_params(params: dict[str, Any] | None) -> SleepParams:
    """A client's sleep params, validated; the fields only the service sets are refused."""
    named = sorted(set(params or {}) & set(SERVICE_ONLY))
    if named:
        raise InvalidRequestError(f"sleep params {', '.join(named)} are set by the service, not in a request")
    try:
        return SleepParams.model_validate(params or {})
    except ValidationError as error:
        raise InvalidRequestError(f"invalid sleep params: {describe_problems(error.errors())}") from None

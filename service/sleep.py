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
from orchestrator.core.errors import InvalidRequestError, PromptTooLongError, TTCError, describe_problems
from orchestrator.core.rendering import ChatRenderer
from orchestrator.core.session import Session
from orchestrator.core.store import JobRecord, Store
from orchestrator.core.store.api_keys import ApiKey
from orchestrator.core.store.contexts import PRECOMPUTE_CANCELLED, ContextRecord
from strategies.base import StrategyResult
from strategies.sleep_time import SleepParams, with_memory

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
        if self.renderer.count_tokens(text) > self.max_model_len // 2:
            raise PromptTooLongError(
                f"the context is longer than half the model's context ({self.max_model_len} tokens): "
                "questions over it would not fit; shorten it or split it into several contexts"
            )
        try:
            parsed = SleepParams.model_validate(params or {})
        except ValidationError as error:
            problems = describe_problems(error.errors())
            raise InvalidRequestError(f"invalid sleep params: {problems}") from None
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

    async def starting(self, job: JobRecord) -> None:
        """A precompute job begins: its context shows it is computing (the ``sleep_time`` strategy
        then runs like any other)."""
        await self.store.mark_context_computing(job.context_id)

    async def question(self, job: JobRecord, session: Session) -> tuple[str, dict[str, Any]]:
        """The question over its context, with the memory if it is ready (or, if asked, once it is).

        A wait takes at most half of the request's deadline; then the question is answered
        without the memory. A memory too long for the model is left out too.
        """
        context = await self.store.get_context(job.context_id)
        if job.context_memory == "wait" and context.status in ("queued", "computing"):
            context = await self._wait_for_memory(context, session)
        memory = context.memory if context.status == "ready" and context.memory else None
        used: dict[str, Any] = {"id": context.id, "status": context.status, "memory_version": None}
        asked = with_memory(context.text, memory, job.question)
        if memory and self.renderer.count_tokens(asked) > self.max_model_len * 3 // 4:
            used["left_out"] = "the memory does not fit in the model's context with the question"
            memory, asked = None, with_memory(context.text, None, job.question)
        if memory:
            used["memory_version"] = context.memory_version
        await session.emit({"type": "context", **used})
        return asked, used

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
        except (TTCError, RedisError, OSError) as problem:
            log.warning("context bookkeeping for job %s failed: %s", job.id, problem)

"""The runtime: the long-lived things of a process, and running a request end to end.

``Runtime.open(settings)`` connects the store, starts the backend and builds the verifiers
once, and closes all three when the process stops. ``reason`` validates a request, records
it as a job, runs the strategy in a fresh session (its own budget meter) and stores the
outcome — including a best-so-far answer when the budget ran out.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel

from orchestrator.core.backends import GenerationBackend, open_backend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.chat import ChatOptions, shape_answer
from orchestrator.core.errors import EngineDiedError, InvalidRequestError, JobExistsError, NotFoundError, TTCError
from orchestrator.core.model_catalog import model_identity
from orchestrator.core.session import EventSink, Session
from orchestrator.core.settings import Settings
from orchestrator.core.store import JobRecord, Store, open_redis
from orchestrator.core.store.api_keys import ApiKey
from orchestrator.core.store.contexts import ContextRecord, new_context_id
from orchestrator.core.store.jobs import MemoryWait, new_job_id
from orchestrator.core.store.records import STORE_ERRORS
from service.jobs import Worker
from service.outcome import Ending, decide
from service.sleep import ContextKeeper, client_sleep_params
from strategies import get_strategy
from strategies.auto import AutoParams, check_policy_model
from strategies.base import StrategyResult, parallel_streams
from strategies.policy import Policy, served_policy
from strategies.sleep_time import SleepParams
from verifiers.registry import VerifierSet
from verifiers.reward import open_reward_model

log = logging.getLogger(__name__)
T = TypeVar("T")


def params_streams(params: BaseModel, served: Policy | None = None) -> int:
    """Sequences these params decode at once; ``auto`` without a policy of its own follows ``served``."""
    if isinstance(params, AutoParams) and params.policy is None and served is not None:
        return served.widest_wave()
    return parallel_streams(params)


def job_streams(job: JobRecord, served: Policy | None = None) -> int:
    """The sequences a stored job decodes at once (1 for params that no longer parse: it fails alone)."""
    try:
        return params_streams(get_strategy(job.strategy).parse_params(job.params), served)
    except TTCError:
        return 1


def job_tree_id(job_id: str) -> str:
    """The tree id a job's engine requests are pinned by (one replica of a fleet).

    Example: ``replica_order(urls, job_tree_id(job.id))[0]`` is the replica the job runs on."""
    return f"tree-{job_id}"


class Runtime:
    """A started backend plus the store, shared by every request of a process."""

    def __init__(self, settings: Settings, backend: GenerationBackend, store: Store, verifiers: VerifierSet) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self.verifiers = verifiers
        self.contexts = ContextKeeper(store, backend.renderer, backend.model.max_model_len)
        self.model_name = model_identity(backend.model.name)  # the catalogue name, however it was loaded
        self.policy = served_policy(self.model_name, settings.routing_policy)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Runtime]:
        """Connect the store first (fast, fails early), then start the backend and build the verifiers."""
        connection = await open_redis(settings.redis_url, settings.data_dir)
        try:
            backend = await open_backend(settings)
            try:
                reward = await open_reward_model(settings, model_identity(backend.model.name))
                try:
                    verifiers = VerifierSet.build(settings, reward)
                    try:
                        store = Store(connection, settings.redis_namespace, retention_s=settings.job_retention_s)
                        yield cls(settings, backend, store, verifiers)
                    finally:
                        await verifiers.aclose()
                finally:
                    if reward is not None:
                        await reward.scorer.aclose()
            finally:
                await backend.aclose()
        finally:
            await connection.aclose()

    def worker(self, concurrency: int | None = None) -> Worker:
        """A worker that runs this runtime's jobs from the queue, as the settings say."""
        return Worker(
            self.store,
            self.execute,
            concurrency=concurrency or self.settings.worker_concurrency,
            streams=self.settings.worker_streams,
            weigh=functools.partial(job_streams, served=self.policy),
            stale_after_s=self.settings.job_stale_after_s,
            max_attempts=self.settings.job_max_attempts,
            heartbeat_file=self.settings.worker_heartbeat_file,
        )

    def session(
        self,
        meter: BudgetMeter,
        emit: EventSink | None = None,
        chat: ChatOptions | None = None,
        tree_id: str | None = None,
    ) -> Session:
        """A session for one request: this runtime's backend and verifiers, the request's meter
        (and a chat request's conversation and seed, and the tree id its engine requests are
        pinned by: a fleet sends them all to one replica)."""
        return Session(
            self.backend,
            meter,
            verifiers=self.verifiers,
            embedder=self.verifiers.embedder,
            emit=emit,
            chat=chat,
            served_model=self.model_name,
            routing_policy=self.policy,
            tree_id=tree_id,
        )

    def effective_budget(self, requested: Budget | None) -> Budget:
        """The request's limits, with the configured defaults for any it leaves unset, each at most
        the operator's ceiling (a request above a ceiling is refused, naming it)."""
        defaults, ceilings = self.settings.budget, self.settings.limits
        requested = requested or Budget()
        limits = {}
        for name, setting in (("max_tokens", "MAX_TOKENS"), ("max_flops", "MAX_FLOPS"), ("deadline_s", "DEADLINE_S")):
            asked, ceiling = getattr(requested, name), getattr(ceilings, name)
            if asked is not None and ceiling is not None and asked > ceiling:
                raise InvalidRequestError(
                    f"budget.{name} = {asked:g} is above this service's ceiling of {ceiling:g} (TTC_LIMITS__{setting})"
                )
            chosen = asked if asked is not None else getattr(defaults, name)
            if ceiling is not None:
                chosen = ceiling if chosen is None else min(chosen, ceiling)
            limits[name] = chosen
        return Budget(**limits)

    def check_parallel(self, strategy: str, params: BaseModel) -> None:
        """Refuse params that would decode more sequences at once than the operator allows."""
        streams, ceiling = params_streams(params, self.policy), self.settings.limits.max_parallel
        if streams > ceiling:
            raise InvalidRequestError(
                f"{strategy} with these params decodes up to {streams} sequences at once; this service's "
                f"ceiling is {ceiling} (TTC_LIMITS__MAX_PARALLEL): lower n, width or samples"
            )

    async def submit(
        self,
        question: str,
        *,
        budget: Budget | None = None,
        strategy: str = "direct",
        params: dict[str, Any] | None = None,
        api_key: ApiKey | None = None,
        context_id: str | None = None,
        context_memory: MemoryWait = "use_if_ready",
        idempotency_key: str | None = None,
        enqueue: bool = False,
        retry_engine_death: bool = True,
        chat: ChatOptions | None = None,
    ) -> JobRecord:
        """Validate a request and store it as a queued job (no compute spent yet), and (``enqueue``)
        on the workers' queue in the same step.

        The job belongs to ``api_key`` (None: a service without keys), and its token budget is
        reserved against the key's quota. With ``context_id`` the question is asked over that
        context (404 unless it exists and has the same owner) and its precomputed memory: used
        if ready, or waited for with ``"wait"``.

        An ``idempotency_key`` the owner already used returns its job. The key is claimed for a
        fresh job id *before* the job is stored (and queued, in the same step), so a retry after
        any failure — Redis lost mid-request, a 503 — finds the job if it was stored and stores
        it under the same id if not: never two jobs, never one unqueued.
        """
        owner = api_key.id if api_key else None

        async def store_new(job_id: str) -> JobRecord:
            return await self._store_job(
                question, budget, strategy, params, api_key, context_id, context_memory, job_id, enqueue,
                retry_engine_death, chat,
            )  # fmt: skip

        return await self._once_per_key(
            "job",
            owner,
            idempotency_key,
            new_job_id(),
            lambda job_id: self.store.get_owned_job(job_id, owner),
            store_new,
        )

    async def _once_per_key(
        self,
        scope: str,
        owner: str | None,
        idempotency_key: str | None,
        fresh_id: str,
        stored: Callable[[str], Awaitable[T]],
        store_new: Callable[[str], Awaitable[T]],
    ) -> T:
        """Store a new record under ``fresh_id``, or (``idempotency_key`` already used by ``owner``)
        return the one the key names: the key is claimed before anything is stored, a record it
        names that is not stored yet is stored under that id, and a concurrent twin that stored it
        first wins (``JobExistsError``)."""
        target = fresh_id
        if idempotency_key:
            target = await self.store.claim_idempotency(scope, owner, idempotency_key, fresh_id)
            with contextlib.suppress(NotFoundError):  # not stored yet: by an attempt that failed, or by us now
                return await stored(target)
        try:
            return await store_new(target)
        except JobExistsError:  # a concurrent twin with the same key stored it first
            return await stored(target)

    async def _store_job(
        self,
        question: str,
        budget: Budget | None,
        strategy: str,
        params: dict[str, Any] | None,
        api_key: ApiKey | None,
        context_id: str | None,
        context_memory: MemoryWait,
        job_id: str,
        enqueue: bool,
        retry_engine_death: bool,
        chat: ChatOptions | None,
    ) -> JobRecord:
        if not question.strip():
            raise InvalidRequestError("the question is empty")
        chosen = get_strategy(strategy)
        parsed = chosen.parse_params(params)
        self.check_parallel(strategy, parsed)
        if isinstance(parsed, AutoParams) and parsed.policy is not None:
            check_policy_model(parsed.policy, self.model_name)  # refused before anything is stored
        owner = api_key.id if api_key else None
        if context_id is not None:
            await self.store.get_owned_context(context_id, owner)
        if chat is not None and chat.seed is not None and not self.backend.seeds_requests:
            raise InvalidRequestError(
                "this engine cannot seed a request (vLLM's CPU build crashes on per-request seeds): leave seed unset"
            )
        job = JobRecord(
            id=job_id,
            question=question,
            strategy=strategy,
            params=parsed.model_dump(),
            budget=self.effective_budget(budget),
            api_key_id=owner,
            context_id=context_id,
            context_memory=context_memory,
            retry_engine_death=retry_engine_death,
            chat=chat,
        )
        return await self.store.create_job(job, api_key.quota_tokens if api_key else None, enqueue=enqueue)

    async def execute(self, job: JobRecord) -> JobRecord:
        """Run a claimed job's strategy under a fresh meter; fills in the outcome (not stored here).

        Progress events go to the job's event stream (the store adds the result event when
        the outcome is stored). On cancellation the job is marked ``cancelled`` with its
        usage so far, and the cancellation propagates. A job over a context (a precompute,
        or a question) settles its effect on the context however it ends.
        """
        # The deadline counts from submission: a job that waited in the queue has less time left.
        meter = BudgetMeter(job.budget, self.backend.model.shape, waited_s=time.time() - job.created_at)

        async def emit(event: dict[str, Any]) -> None:
            try:
                await self.store.append_event(job.id, {**event, "usage": meter.snapshot().model_dump()})
            except STORE_ERRORS as error:  # progress is for watchers: Redis away must not fail the job
                log.debug("job %s: progress event dropped (%s)", job.id, error)

        # a job's tree is named after it: run again (by another worker too) it goes to the same
        # replica, whose prefix cache still holds its prompt
        session = self.session(meter, emit, job.chat, tree_id=job_tree_id(job.id))
        await emit({"type": "started", "strategy": job.strategy})
        ended: Ending
        try:
            ended = await self._run_once_more_if_the_engine_dies(job, session)
        except BaseException as error:  # a service error, a cancellation or a bug: decided below
            ended = error
        if isinstance(ended, StrategyResult) and job.chat is not None:
            # the answer's text as the chat request shaped it (length, stop strings)
            output, cut = shape_answer(ended.output, job.chat, self.backend.renderer)
            ended = ended.model_copy(update={"output": output, "cut_off": ended.cut_off or cut == "length"})
        outcome = decide(job.kind, ended, meter.snapshot(), anyio.get_cancelled_exc_class())
        if isinstance(ended, StrategyResult) and outcome.status == "succeeded" and job.context_id is not None:
            # a question answered over a memory is counted, and carries its share of the sleep
            outcome = replace(outcome, usage=await self.contexts.with_amortised_sleep(job, ended, outcome.usage))
        outcome.apply(job)
        if job.context_id is not None:
            with anyio.CancelScope(shield=True):  # a cancelled precompute still records how it ended
                await self.contexts.settle(job)
        if isinstance(ended, BaseException) and not isinstance(ended, TTCError):
            raise ended  # cancelled, or a bug: recorded above, and it propagates
        return job

    async def _run_once_more_if_the_engine_dies(self, job: JobRecord, session: Session) -> StrategyResult:
        """Run the job; if the engine dies under it, run it again on the rebuilt engine (once, and
        only if the request allows it). The same meter goes on: both attempts are charged."""
        for attempt in (1, 2):
            try:
                return await self._answer(job, session)
            except EngineDiedError as error:
                if attempt == 2 or not job.retry_engine_death:
                    raise
                log.warning("job %s: the engine died under it; running it once more", job.id)
                await session.emit({"type": "retry", "reason": error.code, "message": error.message})
        raise AssertionError("unreachable")

    async def _answer(self, job: JobRecord, session: Session) -> StrategyResult:
        """Run the job's strategy on its question (asked over its context and memory, if any; a
        precompute's question is the context itself)."""
        chosen = get_strategy(job.strategy)
        if job.kind == "precompute":
            await self.contexts.starting(job)
        if job.context_id is None or job.kind == "precompute":
            return await chosen.run(job.question, session, chosen.parse_params(job.params))
        question, used = await self.contexts.question(job, session)
        result = await chosen.run(question, session, chosen.parse_params(job.params))
        return result.model_copy(update={"trace": {"context": used, **result.trace}})

    async def create_context(
        self,
        text: str,
        *,
        sleep_budget: Budget | None = None,
        params: dict[str, Any] | None = None,
        api_key: ApiKey | None = None,
        idempotency_key: str | None = None,
        enqueue: bool = False,
    ) -> tuple[ContextRecord, JobRecord]:
        """Store a context and its precompute job, owned by ``api_key``; ``enqueue`` queues the job
        in the same step. An ``idempotency_key`` the owner already used returns its context (and
        job), claimed before anything is stored, as for ``submit``."""
        owner = api_key.id if api_key else None
        parsed = client_sleep_params(params)
        self.check_parallel("sleep_time", parsed)

        async def store_new(context_id: str) -> tuple[ContextRecord, JobRecord]:
            budget = self.effective_budget(self._sleep_budget(sleep_budget, parsed))
            return await self.contexts.create(text, budget, params, api_key, context_id=context_id, enqueue=enqueue)

        return await self._once_per_key(
            "context", owner, idempotency_key, new_context_id(),
            lambda context_id: self._stored_context(context_id, owner), store_new,
        )  # fmt: skip

    async def extend_context(
        self,
        context_id: str,
        text: str,
        *,
        sleep_budget: Budget | None = None,
        api_key: ApiKey | None = None,
        idempotency_key: str | None = None,
        enqueue: bool = False,
    ) -> tuple[ContextRecord, JobRecord]:
        """Append ``text`` to a context the caller owns and store its re-sleep job (``enqueue``:
        queued in the same step); its budget is ``sleep_budget`` or the context's own. A key the
        owner already used returns the context and the re-sleep it started, so a retried append
        appends once."""
        owner = api_key.id if api_key else None

        async def store_new(job_id: str) -> tuple[ContextRecord, JobRecord]:
            context = await self.store.get_owned_context(context_id, owner)
            params = SleepParams.model_validate(context.params)
            budget = self.effective_budget(self._sleep_budget(sleep_budget or context.sleep_budget, params))
            return await self.contexts.extend(context, text, budget, api_key, job_id=job_id, enqueue=enqueue)

        async def stored(job_id: str) -> tuple[ContextRecord, JobRecord]:
            job = await self.store.get_owned_job(job_id, owner)
            return await self.store.get_owned_context(job.context_id or context_id, owner), job

        return await self._once_per_key("context-extend", owner, idempotency_key, new_job_id(), stored, store_new)

    async def delete_context(self, context_id: str, *, api_key: ApiKey | None = None) -> None:
        """Remove a context the caller owns and its memory; a precompute still running is cancelled."""
        await self.contexts.delete(context_id, api_key)

    def _sleep_budget(self, requested: Budget | None, params: SleepParams) -> Budget:
        """A precompute's budget: as requested, and where it names no token limit, what its params can
        spend (up to the operator's ceiling) instead of a question's default, which would afford a
        round's proposal and only a couple of its answers."""
        requested = requested or Budget()
        if requested.max_tokens is not None:
            return requested
        needed = params.full_cost()
        return requested.model_copy(update={"max_tokens": min(needed, self.settings.limits.max_tokens)})

    async def _stored_context(self, context_id: str, owner: str | None) -> tuple[ContextRecord, JobRecord]:
        context = await self.store.get_owned_context(context_id, owner)
        return context, await self.store.get_owned_job(context.job_id, owner)

    async def reason(
        self,
        question: str,
        *,
        budget: Budget | None = None,
        strategy: str = "direct",
        params: dict[str, Any] | None = None,
        context_id: str | None = None,
        context_memory: MemoryWait = "use_if_ready",
    ) -> JobRecord:
        """Answer ``question`` in this process, no queue; returns the stored job record.

        Example: ``job = await runtime.reason("What is 7 + 5?")``; ``job.answer == "12"``.
        """
        job = await self.submit(
            question,
            budget=budget,
            strategy=strategy,
            params=params,
            context_id=context_id,
            context_memory=context_memory,
        )
        return await self.run_inline(job)

    async def precompute(
        self, text: str, *, sleep_budget: Budget | None = None, params: dict[str, Any] | None = None
    ) -> ContextRecord:
        """Create a context and precompute its memory in this process; returns the stored context."""
        context, job = await self.create_context(text, sleep_budget=sleep_budget, params=params)
        await self.run_inline(job)
        return await self.store.get_context(context.id)

    async def run_inline(self, job: JobRecord) -> JobRecord:
        """Claim, run and store a just-created job here instead of through the queue."""
        owner = f"inline-{job.id}"
        claimed = await self.store.claim_job(job.id, owner)
        assert claimed is not None  # just created, nobody else knows it
        try:
            await self.execute(claimed)
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.finish_job(claimed, owner)
        return claimed

"""The runtime: the long-lived things of a process, and running a request end to end.

``Runtime.open(settings)`` connects the store, starts the backend and builds the verifiers
once, and closes all three when the process stops. ``reason`` validates a request, records
it as a job, runs the strategy in a fresh session (its own budget meter) and stores the
outcome — including a best-so-far answer when the budget ran out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from orchestrator.core.backends import GenerationBackend, open_backend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.errors import InvalidRequestError, TTCError
from orchestrator.core.session import EventSink, Session
from orchestrator.core.settings import Settings
from orchestrator.core.store import JobRecord, Store, open_redis
from orchestrator.core.store.contexts import ContextRecord
from orchestrator.core.store.store import MemoryWait
from orchestrator.sleep import ContextKeeper
from strategies import get_strategy
from strategies.base import StrategyResult
from verifiers.registry import VerifierSet


class Runtime:
    """A started backend plus the store, shared by every request of a process."""

    def __init__(self, settings: Settings, backend: GenerationBackend, store: Store, verifiers: VerifierSet) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self.verifiers = verifiers
        self.contexts = ContextKeeper(store, backend.renderer, backend.model.max_model_len)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Runtime]:
        """Connect the store first (fast, fails early), then start the backend and build the verifiers."""
        connection = await open_redis(settings.redis_url, settings.data_dir)
        try:
            backend = await open_backend(settings)
            try:
                verifiers = VerifierSet.build(settings)
                try:
                    yield cls(settings, backend, Store(connection, settings.redis_namespace), verifiers)
                finally:
                    await verifiers.aclose()
            finally:
                await backend.aclose()
        finally:
            await connection.aclose()

    def session(self, meter: BudgetMeter, emit: EventSink | None = None) -> Session:
        """A session for one request: this runtime's backend and verifiers, the request's meter."""
        return Session(self.backend, meter, verifiers=self.verifiers, emit=emit)

    def effective_budget(self, requested: Budget | None) -> Budget:
        """The request's limits, with the configured defaults for any it leaves unset."""
        defaults = self.settings.budget
        requested = requested or Budget()
        return Budget(
            max_tokens=requested.max_tokens if requested.max_tokens is not None else defaults.max_tokens,
            max_flops=requested.max_flops if requested.max_flops is not None else defaults.max_flops,
            deadline_s=requested.deadline_s if requested.deadline_s is not None else defaults.deadline_s,
        )

    async def submit(
        self,
        question: str,
        *,
        budget: Budget | None = None,
        strategy: str = "direct",
        params: dict[str, Any] | None = None,
        api_key_id: str | None = None,
        context_id: str | None = None,
        context_memory: MemoryWait = "use_if_ready",
    ) -> JobRecord:
        """Validate a request and store it as a queued job (no compute spent yet).

        With ``context_id`` the question is asked over that context (404 if it does not
        exist) and its precomputed memory: used if ready, or waited for with ``"wait"``.
        """
        if not question.strip():
            raise InvalidRequestError("the question is empty")
        chosen = get_strategy(strategy)
        parsed = chosen.parse_params(params)
        if context_id is not None:
            await self.store.get_context(context_id)
        job = JobRecord(
            question=question,
            strategy=strategy,
            params=parsed.model_dump(),
            budget=self.effective_budget(budget),
            api_key_id=api_key_id,
            context_id=context_id,
            context_memory=context_memory,
        )
        return await self.store.create_job(job)

    async def execute(self, job: JobRecord) -> JobRecord:
        """Run a claimed job's strategy under a fresh meter; fills in the outcome (not stored here).

        Progress events go to the job's event stream (the store adds the result event when
        the outcome is stored). On cancellation the job is marked ``cancelled`` with its
        usage so far, and the cancellation propagates. A job over a context (a precompute,
        or a question) settles its effect on the context however it ends.
        """
        meter = BudgetMeter(job.budget, self.backend.model.shape)

        async def emit(event: dict[str, Any]) -> None:
            await self.store.append_event(job.id, {**event, "usage": meter.snapshot().model_dump()})

        session = self.session(meter, emit)
        await emit({"type": "started", "strategy": job.strategy})
        failure: TTCError | None = None
        try:
            result = await (
                self.contexts.precompute(job, session) if job.kind == "precompute" else self._answer(job, session)
            )
        except TTCError as error:  # a budget error here means nothing usable was produced in time
            job.status, job.error, failure = "failed", error.to_dict(), error
        except BaseException as error:  # cancelled, or a bug: record it, then let it propagate
            cancelled = isinstance(error, anyio.get_cancelled_exc_class())
            job.status = "cancelled" if cancelled else "failed"
            if not cancelled:
                job.error = TTCError(f"internal error: {type(error).__name__}: {error}").to_dict()
            job.usage = meter.snapshot()
            if job.context_id is not None:
                with anyio.CancelScope(shield=True):
                    await self.contexts.settle(job)
            raise
        else:
            job.status = "succeeded"
            job.answer, job.output, job.trace = result.answer, result.output, result.trace
            job.best_so_far = result.best_so_far
        job.usage = meter.snapshot()
        if job.context_id is not None:
            await self.contexts.settle(job, failure)
        return job

    async def _answer(self, job: JobRecord, session: Session) -> StrategyResult:
        """Run the job's strategy on its question (asked over its context and memory, if any)."""
        chosen = get_strategy(job.strategy)
        if job.context_id is None:
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
        api_key_id: str | None = None,
    ) -> tuple[ContextRecord, JobRecord]:
        """Store a context and its precompute job (the caller enqueues the job id)."""
        return await self.contexts.create(text, self.effective_budget(sleep_budget), params, api_key_id)

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

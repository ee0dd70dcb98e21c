"""The runtime: one backend and one store for a process, and running a request end to end.

``Runtime.open(settings)`` starts (and later stops) both; ``reason`` validates a
request, records it as a job, runs the strategy under a fresh budget meter and stores
the outcome — including a best-so-far answer when the budget ran out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from pydantic import ValidationError

from orchestrator.backends import GenerationBackend, open_backend
from orchestrator.budget import Budget, BudgetMeter
from orchestrator.context import ReasoningContext
from orchestrator.errors import InvalidRequestError, TTCError
from orchestrator.settings import Settings
from orchestrator.store import JobRecord, Store, open_redis
from orchestrator.store.contexts import ContextRecord
from orchestrator.store.store import ContextMemory
from strategies import get_strategy
from strategies.base import StrategyResult
from strategies.sleep_time import SleepParams, precompute_memory, with_memory

CONTEXT_POLL_S = 0.25


def _mark_computing(record: ContextRecord) -> ContextRecord | None:
    if record.status == "queued":
        record.status = "computing"
        return record
    return None


class Runtime:
    """A started backend plus the store, shared by every request of a process."""

    def __init__(self, settings: Settings, backend: GenerationBackend, store: Store) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Runtime]:
        """Connect the store first (fast, fails early), then start the backend."""
        connection = await open_redis(settings.redis_url, settings.data_dir)
        try:
            backend = await open_backend(settings)
            try:
                yield cls(settings, backend, Store(connection, settings.redis_namespace))
            finally:
                await backend.aclose()
        finally:
            await connection.aclose()

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
        context_memory: ContextMemory = "use_if_ready",
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
        usage so far, and the cancellation propagates.
        """
        meter = BudgetMeter(job.budget, self.backend.model.shape)

        async def emit(event: dict[str, Any]) -> None:
            await self.store.append_event(job.id, {**event, "usage": meter.snapshot().model_dump()})

        ctx = ReasoningContext(self.backend, meter, emit=emit)
        await emit({"type": "started", "strategy": job.strategy})
        try:
            if job.kind == "precompute":
                result = await self._precompute(job, ctx)
            else:
                result = await self._answer(job, ctx)
        except TTCError as error:  # a budget error here means nothing usable was produced in time
            job.status, job.error = "failed", error.to_dict()
            if job.kind == "precompute":
                await self._context_failed(job, error)
        except BaseException as error:  # cancelled, or a bug: record it, then let it propagate
            cancelled = isinstance(error, anyio.get_cancelled_exc_class())
            job.status = "cancelled" if cancelled else "failed"
            if not cancelled:
                job.error = TTCError(f"internal error: {type(error).__name__}: {error}").to_dict()
            job.usage = meter.snapshot()
            raise
        else:
            job.status = "succeeded"
            job.answer, job.output, job.trace = result.answer, result.output, result.trace
            job.best_so_far = result.best_so_far
        job.usage = meter.snapshot()
        if job.status == "succeeded" and job.context_id is not None:
            await self._account_context(job)
        return job

    async def _answer(self, job: JobRecord, ctx: ReasoningContext) -> StrategyResult:
        """Run the job's strategy on its question (asked over its context and memory, if any)."""
        chosen = get_strategy(job.strategy)
        if job.context_id is None:
            return await chosen.run(job.question, ctx, chosen.parse_params(job.params))
        question, used = await self._question_over_context(job, ctx)
        result = await chosen.run(question, ctx, chosen.parse_params(job.params))
        return result.model_copy(update={"trace": {"context": used, **result.trace}})

    async def _question_over_context(self, job: JobRecord, ctx: ReasoningContext) -> tuple[str, dict[str, Any]]:
        """The question with its context, and the memory if it is ready (or, if asked, once it is)."""
        context = await self.store.get_context(job.context_id)
        while job.context_memory == "wait" and context.status in ("queued", "computing"):
            ctx.meter.check()  # the request's deadline bounds the wait
            await anyio.sleep(CONTEXT_POLL_S)
            context = await self.store.get_context(job.context_id)
        memory = context.memory if context.status == "ready" else None
        used = {
            "id": context.id,
            "status": context.status,
            "memory_version": context.memory_version if memory else None,
        }
        await ctx.emit({"type": "context", **used})
        return with_memory(context.text, memory, job.question), used

    async def _precompute(self, job: JobRecord, ctx: ReasoningContext) -> StrategyResult:
        """The sleep phase: notes on the context, before any question."""
        await self.store.update_context(job.context_id, _mark_computing)
        memory = await precompute_memory(job.question, ctx, SleepParams.model_validate(job.params))
        trace = {"notes": memory.notes, "dropped": memory.dropped, "rounds": memory.rounds}
        return StrategyResult(answer=None, output=memory.text, trace=trace)

    async def _account_context(self, job: JobRecord) -> None:
        """After success: a precompute stores its memory; a question counts toward amortisation."""
        if job.kind == "precompute":
            await self.store.save_memory(job.context_id, job.output or "", job.usage)
            return
        context = await self.store.count_query(job.context_id)
        job.usage.sleep_time_tokens = context.sleep_tokens
        job.usage.amortised_sleep_tokens = round(context.sleep_tokens / context.queries, 3)

    async def _context_failed(self, job: JobRecord, error: TTCError) -> None:
        def failed(record: ContextRecord) -> ContextRecord:
            record.status, record.error = ("ready" if record.memory else "failed"), error.to_dict()
            return record

        await self.store.update_context(job.context_id, failed)

    async def create_context(
        self, text: str, *, sleep_budget: Budget | None = None, params: dict[str, Any] | None = None
    ) -> tuple[ContextRecord, JobRecord]:
        """Store a context and queue its precompute job (the caller enqueues the job id)."""
        if not text.strip():
            raise InvalidRequestError("the context text is empty")
        try:
            parsed = SleepParams.model_validate(params or {})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise InvalidRequestError(f"invalid sleep params: {problems}") from None
        budget = self.effective_budget(sleep_budget)
        context = ContextRecord(text=text, sleep_budget=budget, params=parsed.model_dump())
        job = JobRecord(
            question=text,
            strategy="sleep_time",
            params=context.params,
            budget=budget,
            kind="precompute",
            context_id=context.id,
        )
        context.job_id = job.id
        await self.store.create_context(context)
        await self.store.create_job(job)
        return context, job

    async def reason(
        self,
        question: str,
        *,
        budget: Budget | None = None,
        strategy: str = "direct",
        params: dict[str, Any] | None = None,
        context_id: str | None = None,
        context_memory: ContextMemory = "use_if_ready",
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

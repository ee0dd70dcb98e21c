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

from orchestrator.backends import GenerationBackend, open_backend
from orchestrator.budget import Budget, BudgetMeter
from orchestrator.context import ReasoningContext
from orchestrator.errors import BudgetExceededError, InvalidRequestError, TTCError
from orchestrator.settings import Settings
from orchestrator.store import JobRecord, Store, open_redis
from strategies import get_strategy


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

    async def reason(
        self,
        question: str,
        *,
        budget: Budget | None = None,
        strategy: str = "direct",
        params: dict[str, Any] | None = None,
    ) -> JobRecord:
        """Answer ``question`` with ``strategy`` under ``budget``; returns the stored job record.

        Example: ``job = await runtime.reason("What is 7 + 5?")``; ``job.answer == "12"``.
        """
        if not question.strip():
            raise InvalidRequestError("the question is empty")
        chosen = get_strategy(strategy)
        parsed = chosen.parse_params(params)
        job = JobRecord(
            question=question, strategy=strategy, params=parsed.model_dump(), budget=self.effective_budget(budget)
        )
        await self.store.create_job(job)
        meter = BudgetMeter(job.budget, self.backend.model.shape)
        job.status = "running"
        await self.store.update_job(job)
        try:
            result = await chosen.run(question, ReasoningContext(self.backend, meter), parsed)
        except BudgetExceededError as error:  # nothing usable was produced within the budget
            job.status, job.error = "failed", error.to_dict()
        except TTCError as error:
            job.status, job.error = "failed", error.to_dict()
        except BaseException as error:  # cancelled, or a bug: record it, then let it propagate
            cancelled = isinstance(error, anyio.get_cancelled_exc_class())
            job.status = "cancelled" if cancelled else "failed"
            if not cancelled:
                job.error = TTCError(f"internal error: {type(error).__name__}: {error}").to_dict()
            with anyio.CancelScope(shield=True):
                job.usage = meter.snapshot()
                await self.store.update_job(job)
            raise
        else:
            job.status = "succeeded"
            job.answer, job.output, job.trace = result.answer, result.output, result.trace
            job.best_so_far = result.best_so_far
        job.usage = meter.snapshot()
        with anyio.CancelScope(shield=True):
            await self.store.update_job(job)
        return job

"""Where a sweep's attempts run: in this process, or through the SDK against a service."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, Field

from orchestrator.core.budget import Budget, Usage
from service.runtime import Runtime


class Attempt(BaseModel):
    """One strategy run on one question: what it answered and what it spent."""

    status: str
    answer: str | None
    output: str | None
    usage: Usage
    trace: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, str] | None = None


class Solver(Protocol):
    """Runs one strategy on one question within a budget."""

    async def solve(self, question: str, strategy: str, params: dict[str, Any], budget: Budget) -> Attempt: ...


class InProcessSolver:
    """Runs attempts on this process's engine (each is a stored job record, as a service's would be)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def solve(self, question: str, strategy: str, params: dict[str, Any], budget: Budget) -> Attempt:
        job = await self.runtime.reason(question, budget=budget, strategy=strategy, params=params)
        return Attempt(
            status=job.status, answer=job.answer, output=job.output, usage=job.usage, trace=job.trace, error=job.error
        )


class ServiceSolver:
    """Runs attempts through the SDK against a running ``ttc serve`` (and its workers)."""

    def __init__(self, client: Any) -> None:  # a ttc.AsyncClient
        self.client = client

    async def solve(self, question: str, strategy: str, params: dict[str, Any], budget: Budget) -> Attempt:
        reply = await self.client.reason(question, budget=budget, strategy=strategy, params=params)
        return Attempt(
            status=reply.status,
            answer=reply.answer,
            output=reply.output,
            usage=reply.usage,
            trace=reply.trace,
            error=reply.error,
        )

"""How a job ended, decided in one place: from what its run ended with and what it spent.

A run ends with a strategy's result, a service error, a cancellation, or a bug. ``decide``
turns that and the meter's usage into the job's outcome — its status, answer, text, trace and
error — and ``JobRecord`` fields are then set from it once (``apply``). Nothing else in the
service sets a job's status after it has run.

    succeeded   a result (with an answer, or a precompute's notes)
    failed      a service error; a bug (as ``internal error``); or a question whose limit ended
                it before any answer existed (``budget_exceeded``: its text so far stays in output)
    cancelled   the caller or the owner cancelled it (what it spent so far is kept)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.core.budget import Usage
from orchestrator.core.errors import BudgetExceededError, TTCError
from orchestrator.core.store import JobRecord
from strategies.base import StrategyResult

Ending = StrategyResult | BaseException
"""What a run ended with: the strategy's result, or what it raised (a cancellation included)."""


class Cancelled(Exception):
    """A job cancelled before its run began (it never got an exception of its own)."""


@dataclass(frozen=True)
class Outcome:
    """A finished job's status and what goes with it."""

    status: Literal["succeeded", "failed", "cancelled"]
    usage: Usage
    answer: str | None = None
    output: str | None = None
    trace: dict[str, Any] = field(default_factory=dict)
    best_so_far: bool = False
    cut_off: bool = False
    error: dict[str, str] | None = None

    def apply(self, job: JobRecord) -> JobRecord:
        """Set the job's outcome fields from this outcome (the only place they are set after a run)."""
        job.status, job.usage, job.error = self.status, self.usage, self.error
        job.answer, job.output, job.trace = self.answer, self.output, self.trace
        job.best_so_far, job.cut_off = self.best_so_far, self.cut_off
        return job


def decide(kind: str, ended: Ending, usage: Usage, cancelled: type[BaseException] = Cancelled) -> Outcome:
    """The outcome of a job of ``kind`` ("reason" or "precompute") whose run ended with ``ended``,
    having spent ``usage``; ``cancelled`` is the event loop's cancellation class.

    Example: ``decide("reason", StrategyResult(answer="7", output="... 7"), usage).status == "succeeded"``.
    """
    if isinstance(ended, StrategyResult):
        fields = {
            "answer": ended.answer,
            "output": ended.output,
            "trace": ended.trace,
            "best_so_far": ended.best_so_far,
            "cut_off": ended.cut_off,
        }
        if kind == "reason" and ended.answer is None and usage.budget_exhausted:
            limit = usage.budget_exhausted
            ended_early = BudgetExceededError(
                f"the {limit} limit ended the request before any answer existed (the text so far is in output); "
                "raise the budget",
                limit=limit,
            )
            return Outcome("failed", usage, error=ended_early.to_dict(), **fields)
        return Outcome("succeeded", usage, **fields)
    if isinstance(ended, cancelled | Cancelled):
        return Outcome("cancelled", usage)
    if isinstance(ended, TTCError):  # a budget error here means nothing usable was produced in time
        return Outcome("failed", usage, error=ended.to_dict())
    bug = TTCError(f"internal error: {type(ended).__name__}: {ended}")
    return Outcome("failed", usage, error=bug.to_dict())

"""A job's outcome, decided in one function from how its run ended and what it spent."""

from __future__ import annotations

import asyncio

from orchestrator.core.budget import Usage
from orchestrator.core.errors import BackendUnavailableError
from orchestrator.core.store import JobRecord
from service.outcome import Cancelled, decide
from strategies.base import StrategyResult

SPENT = Usage(prompt_tokens=10, completion_tokens=30, model_calls=1)


def test_a_result_with_an_answer_succeeds_and_keeps_everything_it_found() -> None:
    result = StrategyResult(answer="7", output="3 + 4 = 7", best_so_far=True, trace={"waves": 2})
    job = decide("reason", result, SPENT).apply(JobRecord(question="3 + 4?", status="running"))
    assert (job.status, job.answer, job.output, job.trace, job.best_so_far) == (
        "succeeded", "7", "3 + 4 = 7", {"waves": 2}, True,
    )  # fmt: skip
    assert job.usage == SPENT and job.error is None


def test_a_question_a_limit_ended_before_any_answer_fails_and_keeps_its_text() -> None:
    ended_early = SPENT.model_copy(update={"budget_exhausted": "tokens"})
    outcome = decide("reason", StrategyResult(answer=None, output="3 + 4 ="), ended_early)
    assert outcome.status == "failed" and outcome.error["code"] == "budget_exceeded"
    assert "tokens limit" in outcome.error["message"] and outcome.output == "3 + 4 ="
    # no limit reached: a strategy that found no answer still succeeded (the text is the answer's place)
    assert decide("reason", StrategyResult(answer=None, output="?"), SPENT).status == "succeeded"
    # a precompute has notes, never an answer: it succeeds even when its budget ran out
    assert decide("precompute", StrategyResult(answer=None, output="Q: ... A: ..."), ended_early).status == "succeeded"


def test_errors_cancellations_and_bugs_each_have_their_status() -> None:
    failed = decide("reason", BackendUnavailableError("the engine is away"), SPENT)
    assert failed.status == "failed" and failed.error["code"] == "backend_unavailable" and failed.usage == SPENT
    assert decide("reason", asyncio.CancelledError(), SPENT, asyncio.CancelledError).status == "cancelled"
    assert decide("reason", Cancelled(), SPENT).status == "cancelled"  # cancelled before it ran
    bug = decide("reason", KeyError("nope"), SPENT)
    assert bug.status == "failed" and bug.error["message"].startswith("internal error: KeyError")

"""A request end to end on the embedded engine: strategy, meter, store."""

from __future__ import annotations

import pytest

from orchestrator.core.budget import Budget
from orchestrator.core.errors import InvalidRequestError
from orchestrator.core.settings import Settings
from service.runtime import Runtime
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from tests.sessions import VERIFIERS

pytestmark = [pytest.mark.engine]


@pytest.fixture
def runtime(inprocess_backend, store) -> Runtime:
    return Runtime(Settings(), inprocess_backend, store, VERIFIERS)


async def test_direct_answers_and_records_usage(runtime: Runtime) -> None:
    job = await runtime.reason("What is 7 + 5?")
    assert job.status == "succeeded"
    assert job.answer is not None and job.output
    usage = job.usage
    assert usage.model_calls == 1
    assert usage.completion_tokens == job.trace["completion_tokens"] > 0
    assert usage.prompt_tokens > 10 and usage.eflops > usage.flops > 0
    stored = await runtime.store.get_job(job.id)
    assert stored.model_dump() == job.model_dump()


async def test_budget_caps_the_answer_length(runtime: Runtime) -> None:
    job = await runtime.reason("Write a long story.", budget=Budget(max_tokens=70), params={"max_tokens": 500})
    assert job.status == "succeeded"
    assert job.usage.compute_tokens <= 70 + job.usage.prompt_tokens
    assert job.trace["finish_reason"] == "length"


async def test_a_budget_of_the_prompt_plus_one_buys_exactly_one_token(runtime: Runtime) -> None:
    prompt = runtime.backend.renderer.render_question("What is 1 + 1?", system=DEFAULT_SYSTEM_PROMPT)
    prompt_tokens = runtime.backend.renderer.count_tokens(prompt)
    job = await runtime.reason("What is 1 + 1?", budget=Budget(max_tokens=prompt_tokens + 1))
    assert job.status == "succeeded" and job.cut_off
    assert job.usage.completion_tokens == 1 and job.usage.compute_tokens <= prompt_tokens + 1
    assert job.trace["finish_reason"] == "length"
    too_small = await runtime.reason("What is 1 + 1?", budget=Budget(max_tokens=prompt_tokens))
    assert too_small.status == "failed" and too_small.error["code"] == "budget_exceeded"
    assert too_small.usage.model_calls == 0  # refused before the call: the prompt alone would not fit


async def test_bad_requests_are_refused_before_any_compute(runtime: Runtime) -> None:
    with pytest.raises(InvalidRequestError, match="unknown strategy"):
        await runtime.reason("q", strategy="nope")
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        await runtime.reason("q", params={"max_tokens": 0})
    with pytest.raises(InvalidRequestError, match="empty"):
        await runtime.reason("   ")
    assert await runtime.store.redis.zcard(runtime.store.keys.jobs_by_time()) == 0

"""The budget meter: counting, limits, and enforcement through the reasoning context."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.backends.scripted import TINY_SHAPE, ScriptedBackend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.costmodel import ModelShape, generation_cost
from orchestrator.core.errors import BudgetExceededError
from tests.sessions import new_session


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_charges_add_up() -> None:
    meter = BudgetMeter(Budget(), TINY_SHAPE)
    meter.charge_generation(prompt_tokens=50, cached_prompt_tokens=30, completion_lengths=[10, 20])
    meter.charge_generation(prompt_tokens=50, cached_prompt_tokens=50, completion_lengths=[5])
    meter.charge_verifier(3)
    meter.record_tree_depth(120)
    meter.record_tree_depth(80)
    usage = meter.snapshot()
    assert (usage.prompt_tokens, usage.cached_prompt_tokens, usage.completion_tokens) == (100, 80, 35)
    assert usage.compute_tokens == 100 - 80 + 35
    assert usage.total_tokens == 135
    assert (usage.model_calls, usage.verifier_calls, usage.kv_footprint_tokens) == (2, 3, 200)
    assert usage.flops > 0 and usage.kv_bytes_read > 0
    assert usage.eflops == pytest.approx(usage.flops + 562.5 * usage.kv_bytes_read)


def test_token_limit_raises_once_spent_and_names_the_limit() -> None:
    meter = BudgetMeter(Budget(max_tokens=100))
    meter.charge_generation(prompt_tokens=60, cached_prompt_tokens=0, completion_lengths=[40])
    with pytest.raises(BudgetExceededError) as caught:
        meter.check()
    assert caught.value.limit == "tokens" and caught.value.code == "budget_exceeded"
    assert meter.usage.budget_exhausted == "tokens"


def test_admit_clamps_max_tokens_to_what_is_left_after_the_prompts() -> None:
    meter = BudgetMeter(Budget(max_tokens=100))
    meter.charge_generation(prompt_tokens=20, cached_prompt_tokens=0, completion_lengths=[20])
    with meter.admit(prompt_tokens=[5, 7], samples=[3, 3], max_tokens=50) as allowed:
        assert allowed == (60 - 12) // 6
        assert meter.remaining_tokens() == 60 - 12 - 6 * allowed  # prompts and completions reserved
    assert meter.remaining_tokens() == 60


def test_admit_refuses_when_not_even_one_token_per_sample_fits() -> None:
    meter = BudgetMeter(Budget(max_tokens=30))
    with pytest.raises(BudgetExceededError), meter.admit(prompt_tokens=[20], samples=[16], max_tokens=8):
        pass  # 20 prompt tokens leave 10 for 16 samples


def test_admit_fits_the_completions_to_the_flops_left() -> None:
    shape = ModelShape(parameters=1_000_000, layers=2, query_heads=2, kv_heads=1, head_dim=8)
    forty_tokens = generation_cost(shape, 10, 0, [40] * 4).eflops
    meter = BudgetMeter(Budget(max_flops=forty_tokens), shape)
    with meter.admit(prompt_tokens=[10], samples=[4], max_tokens=1000) as allowed:
        assert allowed == 40  # cut to what the FLOPs allow, not the 1000 asked for
        with pytest.raises(BudgetExceededError):  # a concurrent branch finds the FLOPs reserved
            with meter.admit(prompt_tokens=[10], samples=[4], max_tokens=1000):
                pass


def test_the_deadline_counts_the_time_spent_waiting_in_the_queue() -> None:
    clock = FakeClock()
    meter = BudgetMeter(Budget(deadline_s=5), clock=clock, waited_s=4)
    assert meter.remaining_seconds() == pytest.approx(1)


def test_deadline_uses_the_clock() -> None:
    clock = FakeClock()
    meter = BudgetMeter(Budget(deadline_s=5), clock=clock)
    meter.check()
    clock.now += 4.9
    assert meter.remaining_seconds() == pytest.approx(0.1)
    clock.now += 0.2
    with pytest.raises(BudgetExceededError, match="deadline"):
        meter.check()
    assert meter.snapshot().wall_time_s == pytest.approx(5.1)


def test_flops_limit() -> None:
    meter = BudgetMeter(Budget(max_flops=1e9), TINY_SHAPE)
    meter.check()
    meter.charge_generation(prompt_tokens=400, cached_prompt_tokens=0, completion_lengths=[400] * 4)
    assert meter.usage.eflops >= 1e9
    with pytest.raises(BudgetExceededError, match="FLOPs"):
        meter.check()


def test_invalid_budgets_are_rejected() -> None:
    with pytest.raises(ValueError):
        Budget(max_tokens=0)
    with pytest.raises(ValueError):
        Budget(deadline_s=-1)
    with pytest.raises(ValueError):
        Budget(max_tokns=5)  # type: ignore[call-arg]


# --- enforcement through the context (scripted backend: pure bookkeeping) --------------------


def ten_char_answers(prompt: str, sampling: SamplingSettings) -> list[str]:
    return ["0123456789" * 10] * sampling.n


async def test_a_request_never_computes_more_than_max_tokens() -> None:
    backend = ScriptedBackend(ten_char_answers)
    meter = BudgetMeter(Budget(max_tokens=500))
    session = new_session(backend, meter)
    steps = 0
    with pytest.raises(BudgetExceededError):
        while True:
            # a new prompt each call (a few dozen "tokens"), so no prompt is ever cached: every
            # call's prompt counts, as the meter's reservation assumes
            prompt = session.renderer.render_question(f"q{steps}")
            await session.generate([prompt], SamplingSettings(n=2, max_tokens=60))
            steps += 1
    assert steps >= 3
    assert meter.usage.compute_tokens <= 500  # the README: never more than max_tokens
    assert meter.usage.model_calls == steps


async def test_concurrent_branches_share_one_budget() -> None:
    backend = ScriptedBackend(ten_char_answers, delay_s=0.05)
    meter = BudgetMeter(Budget(max_tokens=300))
    root = new_session(backend, meter)
    prompt = root.renderer.render_question("q")
    failures: list[BudgetExceededError] = []

    async def branch() -> None:
        try:
            await root.generate([prompt], SamplingSettings(max_tokens=100))
        except BudgetExceededError as error:
            failures.append(error)

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(branch)
    assert meter.usage.completion_tokens <= 300  # reservations kept branches from overspending
    assert failures, "some branches must be refused once the budget is reserved"
    assert {call[2] for call in backend.calls} == {root.tree_id}  # one request, one tree: one replica


async def test_deadline_during_generation_aborts_and_raises() -> None:
    backend = ScriptedBackend(ten_char_answers, delay_s=5.0)
    meter = BudgetMeter(Budget(deadline_s=0.2))
    session = new_session(backend, meter)
    with pytest.raises(BudgetExceededError, match="deadline"):
        await session.generate([session.renderer.render_question("q")], SamplingSettings())
    assert meter.usage.budget_exhausted == "deadline"

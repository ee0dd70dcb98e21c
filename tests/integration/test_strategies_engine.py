"""Every strategy end to end on the embedded engine with real verifiers."""

from __future__ import annotations

import contextlib
import json
import time

import anyio
import pytest

from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.errors import BudgetExceededError
from strategies import get_strategy
from strategies.policy import shipped_policy_path
from tests.sessions import new_session

pytestmark = [pytest.mark.engine]

QUESTION = "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?"
SHORT = {"max_steps": 3, "step_max_tokens": 48}


async def run(backend, name: str, params: dict, budget: Budget, question: str = QUESTION):
    strategy = get_strategy(name)
    meter = BudgetMeter(budget, backend.model.shape)
    result = await strategy.run(question, new_session(backend, meter), strategy.parse_params(params))
    return result, meter.snapshot()


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("direct", {"max_tokens": 96}),
        ("best_of_n", {"n": 4, "max_tokens": 96, "adaptive": False}),
        ("best_of_n", {"n": 4, "max_tokens": 96, "selection": "weighted", "wave_size": 2}),
        ("beam_search", {"width": 2, "samples_per_beam": 2, **SHORT}),
        ("dvts", {"width": 2, "samples_per_beam": 2, **SHORT}),
        ("rebase", {"width": 4, **SHORT}),
        ("ets", {"width": 4, **SHORT}),
    ],
)
async def test_strategy_runs_within_budget_and_accounts_every_token(inprocess_backend, name, params) -> None:
    budget = Budget(max_tokens=3000, deadline_s=300)
    result, usage = await run(inprocess_backend, name, params, budget)
    assert result.output
    assert usage.completion_tokens <= budget.max_tokens
    assert usage.model_calls >= 1 and usage.wall_time_s > 0
    if "tree" in result.trace:
        nodes = result.trace["tree"]["nodes"]
        assert sum(node["tokens"] for node in nodes) == usage.completion_tokens
        assert usage.kv_footprint_tokens == sum(result.trace["tree"]["kv_footprint_per_depth"])
        assert usage.verifier_calls >= 1
        if len(result.trace["tree"]["kv_footprint_per_depth"]) > 1:  # every branch may finish at depth 1
            assert usage.cached_prompt_tokens > 0  # later depths reuse the prompt's KV
    if name == "best_of_n":
        assert result.trace["samples_drawn"] <= params["n"]


async def test_a_model_verifier_is_charged_to_the_request(inprocess_backend) -> None:
    params = {"width": 2, "samples_per_beam": 2, "verifier": "self_judge", **SHORT}
    result, usage = await run(inprocess_backend, "beam_search", params, Budget(max_tokens=4000, deadline_s=300))
    nodes = result.trace["tree"]["nodes"]
    judged_steps = sum(node["depth"] for node in nodes)  # one one-token judgement per step on each path
    assert usage.completion_tokens == sum(node["tokens"] for node in nodes) + judged_steps
    assert all(node["score"] is not None and 0.0 <= node["score"] <= 1.0 for node in nodes)


async def test_a_small_budget_returns_the_best_answer_so_far(inprocess_backend) -> None:
    result, usage = await run(inprocess_backend, "rebase", {"width": 8, **SHORT}, Budget(max_tokens=120))
    assert result.best_so_far
    assert usage.budget_exhausted == "tokens"
    assert usage.completion_tokens <= 120


@pytest.mark.benchmark  # needs the model to answer 12, which is the model's business
async def test_early_stop_saves_samples_on_a_question_answered_the_same_way(inprocess_backend) -> None:
    params = {"n": 16, "wave_size": 2, "temperature": 0.05, "max_tokens": 160}
    budget = Budget(max_tokens=8000, deadline_s=300)
    result, usage = await run(inprocess_backend, "best_of_n", params, budget, question="What is 7 + 5?")
    assert result.answer == "12", result.trace
    assert result.trace["samples_drawn"] < 16  # near-greedy samples agree, so the vote settles early
    assert usage.model_calls == len(result.trace["waves"])


async def test_auto_samples_in_waves_and_charges_everything(inprocess_backend) -> None:
    result, usage = await run(inprocess_backend, "auto", {}, Budget(max_tokens=1200, deadline_s=300))
    route = result.trace["route"]
    policy = json.loads(shipped_policy_path("smollm2-135m").read_text())  # read here, not through the code under test
    rule = max((r for r in policy["rules"] if r["min_tokens"] <= 1200), key=lambda r: r["min_tokens"])
    waves = route["waves"]
    assert route["policy"] == policy["version"] and waves[0]["size"] <= rule["allocation"]["first_wave"]
    assert [w["action"] for w in waves[:-1]] == ["wave"] * (len(waves) - 1) and waves[-1]["action"] == "answer"
    assert sum(w["size"] for w in waves) == result.trace["samples_drawn"] == len(result.trace["samples"])
    assert usage.model_calls == len(waves)  # one batched request a wave, nothing thrown away
    assert usage.compute_tokens <= 1200 and result.output


async def test_a_deadline_ends_sixteen_streams_within_a_few_decode_steps_of_it(inprocess_backend) -> None:
    params = {"n": 16, "adaptive": False, "max_tokens": 1800, "temperature": 1.0}  # about a minute of decoding
    started, decoded_before = time.monotonic(), (await inprocess_backend.counters()).generation_tokens
    with contextlib.suppress(BudgetExceededError):
        await run(inprocess_backend, "best_of_n", params, Budget(deadline_s=5), question="Write a long story.")
    assert time.monotonic() - started >= 5.0  # the deadline, not an early stop, ended it
    at_return = (await inprocess_backend.counters()).generation_tokens
    assert at_return - decoded_before < 16 * 1800  # the streams were stopped, not decoded to their end
    with anyio.fail_after(20):
        while (await inprocess_backend.counters()).requests_running:  # noqa: ASYNC110
            await anyio.sleep(0.2)
    # By the engine's own count, at most a few decode steps of the 16 streams came after the return:
    # the engine requests were aborted, not left decoding (a timed window would be flaky on a shared machine).
    assert (await inprocess_backend.counters()).generation_tokens - at_return <= 16 * 8


async def test_samples_carry_their_confidence_and_deepconf_votes_among_the_most_confident(inprocess_backend) -> None:
    params = {"n": 8, "adaptive": False, "max_tokens": 96, "selection": "weighted", "verifier": "confidence"}
    result, _ = await run(inprocess_backend, "best_of_n", {**params, "keep_top": 0.25}, Budget(deadline_s=300))
    samples = result.trace["samples"]
    for sample in samples:  # every sample measured from its own top-5 logprobs
        measures = sample["confidence"]
        assert {"mean", "lowest_group", "bottom_10", "tail", "self_certainty"} <= set(measures)
        assert 0 < measures["lowest_group"] <= measures["bottom_10"] <= measures["mean"] + 1e-9
    assert result.trace["voters"] == 2
    top_two = sorted(samples, key=lambda s: s["confidence"]["lowest_group"], reverse=True)[:2]
    stated = {s["answer"] for s in top_two if s["answer"] is not None}
    assert result.answer in stated if stated else result.answer is None  # only the two most confident voted


async def test_deepconf_online_stops_traces_in_the_engine_and_charges_what_they_decoded(inprocess_backend) -> None:
    params = {"n": 12, "wave_size": 4, "online_keep": 0.1, "max_tokens": 160, "temperature": 1.0}
    for _ in range(3):  # warm-up traces that happen to agree end sampling before any trace can be cut
        result, usage = await run(inprocess_backend, "best_of_n", params, Budget(deadline_s=300))
        samples = result.trace["samples"]
        if len(samples) > 4:
            break
    assert len(samples) > 4, "three runs in a row settled on their warm-up"
    threshold = result.trace["online_threshold"]
    assert threshold == max(s["confidence"]["lowest_group"] for s in samples[:4])  # keep 0.1 of 4: the best one
    stopped = [s for s in samples if s["stopped"]]
    assert stopped, "with the warm-up's best trace as the bar, later traces fall below it"
    assert all(16 <= s["tokens"] < 160 for s in stopped)  # cut once a 16-token window fell below the bar
    assert usage.completion_tokens == sum(s["tokens"] for s in samples)  # what they decoded is charged
    assert (await inprocess_backend.counters()).requests_running == 0

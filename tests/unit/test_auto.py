"""Compute-optimal routing: difficulty probe, saturation, policy table."""

from __future__ import annotations

import json
from itertools import cycle

import pytest

from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.errors import ConfigurationError
from strategies import get_strategy
from strategies.auto import estimate_difficulty
from strategies.policy import load_policy
from strategies.selection import Sample, agreement
from tests.sessions import new_session


def run_auto(script, budget: Budget | None = None, **params):
    backend = ScriptedBackend(script)
    session = new_session(backend, BudgetMeter(budget or Budget(max_tokens=10_000)))
    strategy = get_strategy("auto")
    return strategy.run("What is 2 + 2?", session, strategy.parse_params(params)), backend, session


def samples(answers: list[str | None], scores: list[float]) -> list[Sample]:
    return [Sample(text=f"{a}", answer=a, score=s) for a, s in zip(answers, scores, strict=True)]


def test_difficulty_estimate() -> None:
    easy = estimate_difficulty(samples(["4"] * 4, [0.95] * 4))
    hard = estimate_difficulty(samples(["1", "2", None, "3"], [0.05, 0.5, 0.5, 0.05]))
    assert agreement(samples(["4"] * 4, [0.95] * 4)) == 1.0 and easy < 0.1 < 0.7 < hard


async def test_a_settled_question_stops_after_the_probe() -> None:
    coro, backend, session = run_auto(lambda p, s: ["2 + 2 = 4. The answer is 4."] * s.n)
    result = await coro
    assert result.answer == "4"
    assert "settled" in result.trace["route"]["choice"]
    assert len(backend.calls) == 1 and session.meter.usage.model_calls == 1


ONE_EDGE_POLICY = {  # easy questions get one sample, the rest a vote: which one ran is plain to see
    "version": "test-1",
    "difficulty_bins": [0.2],
    "table": {
        "0": [{"min_tokens": 0, "strategy": "direct"}],
        "1": [{"min_tokens": 0, "strategy": "best_of_n", "params": {"n": 3, "adaptive": False}}],
    },
}


async def test_a_contested_question_is_routed_by_the_policy() -> None:
    answers = cycle(["2 + 2 = 5. The answer is 5.", "The answer is 4.", "2 + 2 = 4. The answer is 4.", "No idea."])
    coro, backend, _ = run_auto(lambda p, s: [next(answers) for _ in range(s.n)], policy=ONE_EDGE_POLICY)
    result = await coro
    route = result.trace["route"]
    # Agreement 2 of 4 puts the difficulty at 1 - (0.5 + score) / 2 >= 0.25, past the edge at 0.2.
    assert route["probe"]["difficulty"] >= 0.25 and route["bin"] == 1 and route["strategy"] == "best_of_n"
    assert [call[1].n for call in backend.calls] == [4, 3]  # the probe, then the vote of the contested bin
    assert result.answer is not None


def test_policy_choice_follows_the_budget() -> None:
    policy = load_policy()
    _, small = policy.choose(0.9, 500)
    _, large = policy.choose(0.9, 50_000)
    assert small.min_tokens <= 500 < large.min_tokens
    assert policy.choose(0.05, None)[0] == 0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "cannot read"),
        (json.dumps({"version": "x", "difficulty_bins": [0.5], "table": {"0": []}}), "bin"),
        (
            json.dumps(
                {"version": "x", "difficulty_bins": [], "table": {"0": [{"min_tokens": 0, "strategy": "magic"}]}}
            ),
            "magic",
        ),
    ],
)
def test_bad_policy_files_are_refused_with_the_reason(tmp_path, content: str, problem: str) -> None:
    path = tmp_path / "policy.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=problem):
        load_policy(str(path))


def test_the_probe_takes_at_most_half_the_budget_left() -> None:
    from strategies.auto import AutoParams, probe_shape

    params = AutoParams()  # 4 samples x 160 tokens
    assert probe_shape(params, None) == (4, 160)
    assert probe_shape(params, 10_000) == (4, 160)
    assert probe_shape(params, 600) == (4, 75)
    assert probe_shape(params, 256) == (2, 64)
    assert probe_shape(params, 150) is None  # 2 x 37 tokens would say nothing

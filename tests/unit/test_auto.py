"""``auto`` as sequential allocation: waves until the vote settles, scatters or the budget runs out."""

from __future__ import annotations

import json
from itertools import cycle

import pytest

from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.errors import BudgetExceededError, ConfigurationError, InvalidRequestError
from strategies import get_strategy
from strategies.allocation import Allocation, Votes, decide, first_wave_size, joined_vote
from strategies.policy import load_policy, served_policy
from tests.sessions import new_session


def policy(*rules: dict, max_tokens: int = 64) -> dict:
    return {
        "version": "test-2",
        "model": "scripted",  # the scripted backend's name: a policy must be fitted on the served model
        "sampling": {"max_tokens": max_tokens, "system_prompt": None, "typical_tokens": 30},
        "rules": list(rules),
    }


def run_auto(script, budget: Budget | None = None, **params):
    backend = ScriptedBackend(script)
    session = new_session(backend, BudgetMeter(budget or Budget(max_tokens=10_000)))
    events: list[dict] = []
    session.emit = lambda event: _append(events, event)  # type: ignore[method-assign]
    strategy = get_strategy("auto")
    return strategy.run("What is 2 + 2?", session, strategy.parse_params(params)), backend, events


async def _append(events: list[dict], event: dict) -> None:
    events.append(event)


WAVES_OF_TWO = {
    "min_tokens": 0,
    "allocation": {"first_wave": 2, "wave": 2, "max_samples": 8, "stop_votes": 2, "give_up_after": 6},
}


async def test_a_settled_question_stops_after_the_first_wave() -> None:
    coro, backend, events = run_auto(lambda p, s: ["The answer is 4."] * s.n, policy=policy(WAVES_OF_TWO))
    result = await coro
    assert result.answer == "4" and [call[1].n for call in backend.calls] == [2]
    [wave] = result.trace["route"]["waves"]
    assert wave["action"] == "answer" and wave["reason"].startswith("settled") and wave["leader_votes"] == 2
    assert events == [{"type": "route", "wave": 1, **wave}]


async def test_a_contested_question_gets_more_waves_and_keeps_every_sample() -> None:
    answers = cycle(["The answer is 5.", "The answer is 4.", "The answer is 4.", "The answer is 4."])
    coro, backend, events = run_auto(lambda p, s: [next(answers) for _ in range(s.n)], policy=policy(WAVES_OF_TWO))
    result = await coro
    # 5, 4: one vote each; 5, 4, 4, 4: "4" holds 3 of 4, settled
    assert [call[1].n for call in backend.calls] == [2, 2] and result.answer == "4"
    assert result.trace["samples_drawn"] == 4 and [e["action"] for e in events] == ["wave", "answer"]


async def test_scattered_votes_stop_at_the_give_up_point_with_the_plurality() -> None:
    answers = cycle([f"The answer is {n}." for n in range(1, 7)])
    coro, backend, _ = run_auto(lambda p, s: [next(answers) for _ in range(s.n)], policy=policy(WAVES_OF_TWO))
    result = await coro
    assert [call[1].n for call in backend.calls] == [2, 2, 2]
    assert result.trace["route"]["waves"][-1]["reason"].startswith("unsettled after 6")
    assert result.answer == "1"  # six one-vote answers: the first drawn wins the tie


async def test_an_unsettled_question_switches_to_the_policys_search() -> None:
    switching = {
        "min_tokens": 0,
        "allocation": {
            "first_wave": 2,
            "wave": 2,
            "give_up_after": 2,
            "give_up_share": 0.6,
            "switch": {"strategy": "direct"},
        },
    }
    answers = cycle(["The answer is 3.", "The answer is 5.", "The answer is 4."])
    coro, backend, _ = run_auto(lambda p, s: [next(answers) for _ in range(s.n)], policy=policy(switching))
    result = await coro
    assert result.trace["route"]["switched_to"] == "direct" and result.answer == "4"
    assert len(backend.calls) == 2


async def test_a_seeded_switch_lets_the_drawn_samples_outvote_the_search() -> None:
    seeded = {
        "min_tokens": 0,
        "allocation": {
            "first_wave": 4,
            "give_up_after": 4,
            "give_up_share": 0.6,
            "switch": {"strategy": "direct", "vote_with_samples": True},
        },
    }
    # the samples say 7, 7, 3, 5 (7 leads with half the votes: unsettled); the search says 4,
    # one vote against 7's two, so the samples' 7 stands; a search saying 3 would tie 7 and win
    for search, expected in (("4", "7"), ("3", "3")):
        answers = iter([*(f"The answer is {n}." for n in (7, 7, 3, 5)), f"The answer is {search}."])
        script = lambda p, s, answers=answers: [next(answers) for _ in range(s.n)]  # noqa: E731
        coro, backend, _ = run_auto(script, policy=policy(seeded))
        result = await coro
        route = result.trace["route"]
        assert route["switched_to"] == "direct" and route["joined_vote"] == {"search": search, "answer": expected}
        assert result.answer == expected and expected in result.output and len(backend.calls) == 2


def test_the_joined_vote_counts_the_search_once_and_gives_it_ties() -> None:
    assert joined_vote(["4", "4", "5"], "5") == "5"
    assert joined_vote(["4", "4", "5"], "7") == "4"
    assert joined_vote(["4", None], None) == "4" and joined_vote([None, None], "9") == "9"
    assert joined_vote([], None) is None


async def test_the_budget_sizes_the_waves_and_a_spent_one_still_answers() -> None:
    answers = cycle(["The answer is 5.", "The answer is 4."])
    budget = Budget(max_tokens=120)  # a ~25-token prompt and ~17-token samples: room for a few only
    coro, backend, _ = run_auto(lambda p, s: [next(answers) for _ in range(s.n)], budget, policy=policy(WAVES_OF_TWO))
    result = await coro
    assert sum(call[1].n for call in backend.calls) < 8 and result.answer in {"4", "5"}
    with pytest.raises(BudgetExceededError):
        await run_auto(lambda p, s: ["The answer is 4."] * s.n, Budget(max_tokens=20), policy=policy(WAVES_OF_TWO))[0]


def test_decide_reads_only_the_votes_and_the_budget() -> None:
    rule = Allocation(first_wave=4, wave=4, stop_share=0.75, stop_votes=3, give_up_after=8, give_up_share=0.3)
    assert decide(rule, Votes.of(["4", "4", "4", "5"]), 1000, 100).action == "answer"
    more = decide(rule, Votes.of(["4", "4", "5", "6"]), 1000, 100)
    assert (more.action, more.size, more.features["margin"]) == ("wave", 4, 1)
    assert decide(rule, Votes.of(["4", "4", "5", "6"]), 240, 100).size == 2  # the budget affords two
    assert decide(rule, Votes.of(["4", "4", "5", "6"]), 250, 100).size == 3  # and half of a third: try it
    assert decide(rule, Votes.of(["4", "4", "5", "6"]), 40, 100).reason.startswith("the budget")
    assert decide(rule, Votes.of(list("12345678")), None, 100).reason.startswith("unsettled")
    assert Votes.of(["4", None, "5", "4"]).share == 0.5 and Votes.of([]).leader is None
    assert first_wave_size(rule, 240, 100) == 2 and first_wave_size(rule, 30, 100) == 1
    assert first_wave_size(rule, 0, 100) == 0


def test_the_rule_follows_the_budget_and_the_shipped_policy_loads() -> None:
    shipped = served_policy("smollm2-135m")
    assert shipped is not None and shipped.model == "smollm2-135m"
    small, large = shipped.rule_for(100), shipped.rule_for(50_000)
    assert small.min_tokens <= 100 < large.min_tokens and shipped.rule_for(None) == large


def test_an_inline_policy_bounds_the_parallel_streams() -> None:
    params = get_strategy("auto").parse_params({"policy": policy(WAVES_OF_TWO)})
    assert params.parallel_streams() == 2
    with pytest.raises(InvalidRequestError, match="magic"):
        get_strategy("auto").parse_params(
            {"policy": policy({"min_tokens": 0, "allocation": {"switch": {"strategy": "magic"}}})}
        )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "cannot read"),
        (json.dumps({"version": "x", "rules": []}), "rules"),
        (json.dumps({"version": "x", "difficulty_bins": [0.5], "table": {}}), "cannot read"),
        (json.dumps({**policy(WAVES_OF_TWO), "format": "ttc-policy/1"}), "format"),
        (json.dumps(policy({"min_tokens": 0, "allocation": {"first_wave": 9, "max_samples": 4}})), "max_samples"),
    ],
)
def test_bad_policy_files_are_refused_with_the_reason(tmp_path, content: str, problem: str) -> None:
    path = tmp_path / "policy.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=problem):
        load_policy(str(path))


async def test_auto_accepts_the_first_sample_the_calculator_checks() -> None:
    answers = cycle(["2 + 2 = 5. The answer is 5.", "2 + 2 = 4. The answer is 4."])
    accepting = {
        "min_tokens": 0,
        "allocation": {"first_wave": 2, "wave": 2, "max_samples": 8, "stop_votes": 3, "accept_score": 0.9},
    }
    coro, backend, _ = run_auto(lambda p, s: [next(answers) for _ in range(s.n)], policy=policy(accepting))
    result = await coro
    assert result.answer == "4" and [call[1].n for call in backend.calls] == [2]  # a 1-1 tie, but one checks
    assert result.trace["route"]["waves"][0]["reason"] == "accepted: a sample answering 4 checks"

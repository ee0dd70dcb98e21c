"""Verifiers that need no model: the calculator, outcome checks, aggregation, P(Yes)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from orchestrator.core.backends.base import TokenLogprob
from orchestrator.core.errors import ConfigurationError, InvalidRequestError
from orchestrator.core.settings import PrmOptions, Settings
from orchestrator.core.verification import ScoreRequest, Verifier, aggregate
from verifiers.arith_steps import NEUTRAL, RIGHT, RIGHT_WITH_ANSWER, WRONG, check_equations, evaluate, score_step
from verifiers.outcome import answers_match, countdown_correct
from verifiers.prm import ProcessRewardModel
from verifiers.registry import VERIFIERS, VerifierSet
from verifiers.self_judge import probability_of_yes


def test_evaluate_is_exact() -> None:
    assert evaluate("12 x 3 + 4") == Fraction(40)
    assert evaluate("1/3 + 1/6") == Fraction(1, 2)
    assert evaluate("1,000 - 1") == Fraction(999)
    assert evaluate("apples") is None
    assert evaluate("5 / 0") is None


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("3 x 4 = 12 apples", RIGHT),
        ("Then 12 - 2 = 10. The answer is 10.", RIGHT_WITH_ANSWER),
        ("So 3 x 4 = 13.", WRONG),
        ("2 + 2 = 4 and 4 * 3 = 11", WRONG),
        ("First, read the problem carefully.", NEUTRAL),
    ],
)
def test_step_scores(step: str, expected: float) -> None:
    assert score_step(step) == expected


def test_equations_are_counted() -> None:
    assert check_equations("7 + 5 = 12, 12 * 2 = 24, 24 / 5 = 4") == (3, 2)


async def test_calculator_verifier_scores_every_step() -> None:
    verifier = VerifierSet.build(Settings()).get("arith_steps")
    scores = await verifier.score(
        [ScoreRequest("q", ("3 x 4 = 12\n\n", "12 - 2 = 9\n\n")), ScoreRequest("q", ())], None
    )
    assert scores == [[RIGHT, WRONG], []]


def test_aggregation() -> None:
    assert aggregate([0.9, 0.5, 0.8], "last") == 0.8
    assert aggregate([0.9, 0.5, 0.8], "min") == 0.5
    assert aggregate([0.5, 0.5], "prod") == 0.25
    assert aggregate([], "min") == 0.0
    with pytest.raises(InvalidRequestError):
        aggregate([1.0], "mean")  # type: ignore[arg-type]


def test_unknown_verifier_lists_the_known_ones() -> None:
    with pytest.raises(InvalidRequestError, match="arith_steps"):
        VerifierSet.build(Settings()).get("oracle")


async def test_a_verifier_set_builds_each_verifier_once_and_closes_them() -> None:
    verifiers = VerifierSet.build(Settings(prm=PrmOptions(url="http://127.0.0.1:9")))
    assert {"arith_steps", "self_judge", "prm", "confidence", "self_certainty", "answer_logprob"} <= set(VERIFIERS)
    for name in set(VERIFIERS) - {"learned"}:  # learned needs its file (tests/unit/test_learned_verifier.py)
        assert verifiers.get(name) is verifiers.get(name) and isinstance(verifiers.get(name), Verifier)
    assert not verifiers.get("arith_steps").spends_budget and verifiers.get("self_judge").spends_budget
    prm = verifiers.get("prm")
    assert isinstance(prm, ProcessRewardModel)
    client = prm._http()  # what a first scoring call opens
    await verifiers.aclose()
    assert client.is_closed


def test_an_unconfigured_verifier_says_what_to_set() -> None:
    verifiers = VerifierSet.build(Settings())
    with pytest.raises(ConfigurationError, match="TTC_PRM__URL"):
        verifiers.get("prm")


def test_every_verifier_is_described_with_what_it_reads_and_what_to_set() -> None:
    listed = {status.name: status for status in VerifierSet.build(Settings()).describe()}
    assert set(listed) == set(VERIFIERS)
    assert all(status.summary for status in listed.values())  # a new verifier must say what it reads
    assert listed["confidence_mean"].available and listed["confidence_mean"].unavailable_reason is None
    assert not listed["learned"].available and "TTC_LEARNED_VERIFIER" in listed["learned"].unavailable_reason
    assert listed["prm"].reward_model is None  # no model served in this process


def test_answer_equivalence() -> None:
    assert answers_match("12", "12.0")
    assert answers_match("1,000", "1000")
    assert answers_match("\\frac{1}{2}", "0.5")
    assert not answers_match("13", "12")
    assert not answers_match(None, "12")


def test_countdown_checker() -> None:
    assert countdown_correct("(25 - 5) * 4", [25, 5, 4, 7], 80)
    assert countdown_correct("25 * 4 - 5 * 4 = 80", [25, 4, 5, 4], 80)
    assert not countdown_correct("25 * 4 - 5 * 4", [25, 5, 4, 7], 80)  # 4 used twice
    assert not countdown_correct("25 + 5", [25, 5], 31)
    assert not countdown_correct("import os", [1], 1)
    assert not countdown_correct(None, [1], 1)


def test_probability_of_yes_renormalises_over_yes_and_no() -> None:
    token = TokenLogprob("Yes", math.log(0.6), {"Yes": math.log(0.6), " No": math.log(0.2), "Maybe": math.log(0.2)})
    assert probability_of_yes(token) == pytest.approx(0.75)
    assert probability_of_yes(TokenLogprob("Hmm", -0.1, {"Hmm": -0.1})) == 0.5
    assert probability_of_yes(None) == 0.5


def test_a_long_run_of_digits_is_checked_in_linear_time() -> None:
    # Before: exponential backtracking — 60 digits without an "=" would not return in a lifetime.
    assert check_equations("1" * 60 + " and then 12 x 3 = 36") == (1, 1)
    assert score_step("7" * 5000) == score_step("no arithmetic here")


def test_the_sample_verdict_accepts_an_answer_that_checked_arithmetic_produced() -> None:
    from verifiers.arith_steps import RIGHT_WITH_ANSWER, WRONG, sample_verdict

    assert sample_verdict(["3 boxes of 4: 3 * 4 = 12.", "He eats 5: 12 - 5 = 7.", "The answer is 7."]) == 0.95
    assert sample_verdict(["3 * 4 = 12.", "The answer is 12."]) == RIGHT_WITH_ANSWER
    assert sample_verdict(["3 * 4 = 13.", "The answer is 13."]) == WRONG  # an equation fails
    assert sample_verdict(["3 * 4 = 12.", "The answer is 9."]) == 0.5  # no equation produced it
    assert sample_verdict(["I think it is 12.", "The answer is 12."]) == 0.5  # no arithmetic at all

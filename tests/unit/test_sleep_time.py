"""Sleep-time compute logic on the scripted backend: proposed questions, their answers and the
filters (agreement, calculator, grounding), a re-sleep over grown text, and the query prompt."""

from __future__ import annotations

from fractions import Fraction

from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.budget import Budget, BudgetMeter
from strategies.facts import Equation, chain_grounded, context_numbers, equations_in, grounded_in
from strategies.sleep_time import QUERY_NOTES, SleepParams, _capped, precompute_memory, revalidated, with_memory
from tests.sessions import new_session

CONTEXT = "A shop has 12 red pens and 7 blue pens. Every pen costs 3 dollars."


def test_equations_are_read_from_plain_and_latex_working() -> None:
    text = r"First \(12 \text{ pens} \times 3 = 36\) dollars, then $36 + 21 = $57. So (3 + 4) * 2 = 14. Six 12 = 12."
    assert [(eq.expression, eq.value) for eq in equations_in(text)] == [
        ("12 * 3", 36),
        ("36 + 21", 57),
        ("(3 + 4) * 2", 14),
    ]


def test_an_equation_checks_only_when_its_arithmetic_holds() -> None:
    assert Equation("12 + 7", Fraction(19)).checks() and not Equation("12 + 7", Fraction(20)).checks()
    assert Equation("7 / 2", Fraction(7, 2)).line() == "7 / 2 = 3.5"


def test_working_is_grounded_only_in_stated_numbers_and_its_own_earlier_results() -> None:
    known = context_numbers("Twice a week she buys a dozen eggs, 30% of them brown, for 3 dollars.")
    assert {2, 7, 12, 30, 100, 3} <= known
    assert not grounded_in(Equation("1 + 1", Fraction(2)), known - {Fraction(1)})  # holds, says nothing here
    assert chain_grounded(equations_in("2 x 12 = 24, then 24 x 3 = 72"), known)  # 24 came from the step before
    assert not chain_grounded(equations_in("24 x 4 = 96"), known)  # 24 and 4 are nowhere


def test_the_query_prompt_carries_context_facts_and_question() -> None:
    asked = with_memory(CONTEXT, ["Q: How many pens? A: 12 + 7 = 19 → 19"], "How many pens?")
    assert asked.startswith(CONTEXT) and QUERY_NOTES in asked and asked.endswith("Question: How many pens?")
    assert QUERY_NOTES not in with_memory(CONTEXT, None, "How many pens?")


def test_memory_is_capped_at_whole_facts() -> None:
    assert _capped("a: 1 + 1 = 2\nb: 2 + 2 = 4", 14) == "a: 1 + 1 = 2"
    assert _capped("x" * 50, 10) == "x" * 10


SOLUTIONS = {
    "How many pens are there?": ["12 + 7 = 19. The answer is 19."] * 3 + ["The answer is 20."],
    "What do the red pens cost?": ["12 x 3 = 35. The answer is 35."] * 4,  # agreed, arithmetic wrong
    "What do two shops' pens cost?": ["19 x 2 = 38, 38 x 3 = 114. The answer is 114."] * 4,  # 2 shops: not stated
    "How many blue pens are there?": ["The answer is 7."] * 4,  # a lookup: no working to check
    "What is one pen's price in cents?": ["3 x 100 = 300. The answer is 300."] * 2 + ["The answer is 3."] * 2,
    "What are all the pens worth?": ["19 x 3 = 57. The answer is 57."] * 4,  # builds on 19, kept in round 1
}


def shop_script(rounds: list[list[str]], calls: list[str]):
    def script(prompt: str, sampling) -> list[str]:
        calls.append(prompt)
        if "Question: " in prompt:
            question = prompt.split("Question: ")[1].split("\n")[0].split("<")[0].strip()
            return SOLUTIONS[question][: sampling.n]
        return ["\n".join(rounds[min(sum("Question: " not in c for c in calls), len(rounds)) - 1])]

    return script


async def test_each_filter_drops_what_it_should_and_later_rounds_build_on_kept_facts() -> None:
    rounds = [
        [f"{number}. {question}" for number, question in enumerate(list(SOLUTIONS)[:5], start=1)],
        ["Q: What are all the pens worth?", "How many pens are there?"],  # one new, one asked before
        ["How many pens are there?"],  # nothing new
    ]
    calls: list[str] = []
    session = new_session(ScriptedBackend(shop_script(rounds, calls)), BudgetMeter(Budget()))
    memory = await precompute_memory(CONTEXT, session, SleepParams(rounds=5, samples=4, agree=3))
    assert memory.facts == [
        "Q: How many pens are there? A: 12 + 7 = 19 → 19",
        "Q: What are all the pens worth? A: 19 x 3 = 57 → 57",
    ]
    # 6 proposed, all answered; 5 with 3 of 4 agreeing (not the cents); 4 with a checked working (not
    # the lookup, not 35); 2 grounded (two shops' 2 is nowhere in the context)
    assert memory.stages == {
        "proposed": 6,
        "answered": 6,
        "agreed": 5,
        "checked": 3,
        "grounded": 2,
        "judged": 2,
        "kept": 2,
    }
    assert set(memory.dropped) == set(list(SOLUTIONS)[1:5])
    seen = {c.question: (c.answer, c.votes, c.samples, c.checked, c.grounded) for c in memory.candidates}
    assert seen["How many pens are there?"] == ("19", 3, 4, True, True)
    assert seen["What do the red pens cost?"] == ("35", 4, 4, False, False)  # agreed, arithmetic wrong
    assert seen["What do two shops' pens cost?"] == ("114", 4, 4, True, False)  # checks, 2 ungrounded
    assert memory.rounds == 3 and "Already worked out:\nQ: How many pens are there?" in calls[-1]


async def test_a_budget_too_small_for_a_full_answer_asks_nothing_and_keeps_what_it_has() -> None:
    calls: list[str] = []
    session = new_session(
        ScriptedBackend(shop_script([["How many pens are there?"]], calls)), BudgetMeter(Budget(max_tokens=900))
    )
    memory = await precompute_memory(CONTEXT, session, SleepParams(samples=4, round_max_tokens=384))
    assert memory.facts == [] and session.meter.usage.budget_exhausted == "tokens"
    assert not any("Question: " in call for call in calls)  # no answer was started only to be cut short


async def test_a_judge_scores_the_facts_that_passed_every_other_filter_and_drops_those_at_or_below_its_bar() -> None:
    proposals = [["How many pens are there?", "What do the red pens cost?"]]
    for bar, kept in ((0.4, 1), (0.5, 0)):  # the scripted model never answers Yes or No: P(Yes) is 0.5
        session = new_session(ScriptedBackend(shop_script(proposals, [])))
        params = SleepParams(rounds=1, samples=4, agree=3, judge="self_judge", judge_above=bar)
        memory = await precompute_memory(CONTEXT, session, params)
        assert len(memory.facts) == kept and memory.stages["grounded"] == 1 and memory.stages["judged"] == kept
        judged = {candidate.question: candidate.judge for candidate in memory.candidates}
        assert judged == {"How many pens are there?": 0.5, "What do the red pens cost?": None}


def test_a_re_sleep_keeps_prior_facts_only_while_they_still_hold() -> None:
    prior = [
        "Q: How many pens? A: 12 + 7 = 19 → 19",
        "Q: Worth? A: 19 x 3 = 57 → 57",
        "Q: Made up? A: 40 + 2 = 42 → 42",
        "Q: Wrong? A: 12 + 7 = 20 → 20",
        "not a fact",
    ]
    held = revalidated(prior, context_numbers(CONTEXT))
    assert [fact.line() for fact in held] == prior[:2]


async def test_a_re_sleep_starts_from_the_prior_facts_and_points_at_the_change() -> None:
    calls: list[str] = []
    session = new_session(
        ScriptedBackend(shop_script([["What are all the pens worth?"]], calls)), BudgetMeter(Budget())
    )
    params = SleepParams(rounds=1, prior_facts=["Q: How many pens are there? A: 12 + 7 = 19 → 19"], changed="A note.")
    memory = await precompute_memory(CONTEXT, session, params)
    assert memory.facts == [params.prior_facts[0], "Q: What are all the pens worth? A: 19 x 3 = 57 → 57"]
    assert "The situation has just changed: A note." in calls[0] and "How many pens are there?" in calls[0]

"""Sleep-time compute logic on the scripted backend: notes, their check, the query prompt."""

from __future__ import annotations

from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.budget import Budget, BudgetMeter
from strategies.sleep_time import QUERY_NOTES, SleepParams, _capped, parse_notes, precompute_memory, with_memory
from tests.sessions import new_session

CONTEXT = "A shop has 12 red pens and 7 blue pens. Every pen costs 3 dollars."


def test_notes_are_parsed_from_numbered_or_plain_lines() -> None:
    text = "Here goes.\n1. Q: How many pens? A: 12 + 7 = 19\nQ: Red cost? A: 12 x 3 = 36\nnoise Q: no"
    assert parse_notes(text) == ["Q: How many pens? A: 12 + 7 = 19", "Q: Red cost? A: 12 x 3 = 36"]


def test_the_query_prompt_carries_context_memory_and_question() -> None:
    asked = with_memory(CONTEXT, "Q: How many pens? A: 19", "How many pens?")
    assert asked.startswith(CONTEXT) and QUERY_NOTES in asked and asked.endswith("Question: How many pens?")
    assert QUERY_NOTES not in with_memory(CONTEXT, None, "How many pens?")


def test_memory_is_capped_at_whole_notes() -> None:
    assert _capped("Q: a A: 1\nQ: b A: 2", 12) == "Q: a A: 1"
    assert _capped("x" * 50, 10) == "x" * 10


async def test_wrong_arithmetic_is_dropped_and_rounds_stop_when_nothing_is_new() -> None:
    rounds = [
        "1. Q: How many pens? A: 12 + 7 = 19\n2. Q: Cost of red pens? A: 12 x 3 = 35",
        "Q: How many pens? A: 12 + 7 = 19\nQ: Cost of blue pens? A: 7 x 3 = 21",
        "Q: How many pens? A: 12 + 7 = 19",
    ]
    calls: list[str] = []

    def script(prompt: str, sampling) -> list[str]:
        calls.append(prompt)
        return [rounds[len(calls) - 1]]

    session = new_session(ScriptedBackend(script), BudgetMeter(Budget()))
    memory = await precompute_memory(CONTEXT, session, SleepParams(rounds=5))
    assert memory.notes == ["Q: How many pens? A: 12 + 7 = 19", "Q: Cost of blue pens? A: 7 x 3 = 21"]
    assert memory.dropped == ["Q: Cost of red pens? A: 12 x 3 = 35"]  # 12 x 3 is 36
    assert memory.rounds == 3 and "Your notes so far:\nQ: How many pens? A: 12 + 7 = 19" in calls[1]


async def test_a_spent_sleep_budget_keeps_the_notes_so_far() -> None:
    def script(prompt: str, sampling) -> list[str]:
        return ["Q: How many pens? A: 12 + 7 = 19\n" + "x" * 400]

    meter = BudgetMeter(Budget(max_tokens=700))
    memory = await precompute_memory(CONTEXT, new_session(ScriptedBackend(script), meter), SleepParams(rounds=4))
    assert memory.notes == ["Q: How many pens? A: 12 + 7 = 19"] and meter.usage.budget_exhausted == "tokens"


def test_notes_with_the_answer_on_the_next_line_are_parsed() -> None:
    text = "Q: 1. What do the red pens cost?\nA: 12 * 3 = 36\nA: a stray answer\nQ: Blue? A: 7 * 3 = 21"
    assert parse_notes(text) == ["Q: What do the red pens cost? A: 12 * 3 = 36", "Q: Blue? A: 7 * 3 = 21"]

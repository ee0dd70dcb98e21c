"""The sleep-time benchmark's arithmetic: frontiers, cost per query with the sleep shared, and
grading facts against a generator's quantities (pure logic, hand-made rows)."""

from __future__ import annotations

import math

from harness.catalog import load_dataset
from harness.sleep_report import accuracy_intervals, comparison, graded_facts, measured


def rows(label: str, correct: list[bool], completion: int, compute: int, contexts: int = 4) -> list[dict]:
    return [
        {
            "label": label,
            "context": f"c{i % contexts}",
            "correct": ok,
            "completion_tokens": completion,
            "compute_tokens": compute,
        }
        for i, ok in enumerate(correct)
    ]


def test_memory_that_matches_the_best_baseline_for_fewer_tokens_shows_the_ratio_and_the_sleep_cost() -> None:
    table = rows("none/direct@64", [True, False] * 4, 60, 160)  # 0.5 accuracy
    table += rows("none/best_of_4@256", [True, True, True, False] * 2, 400, 800)  # 0.75
    table += rows("memory/direct@64", [True, True, True, False] * 2, 40, 200)  # 0.75 at a tenth
    result = measured(table, {f"c{i}": 400 for i in range(4)})
    assert (result["best_none_accuracy"], result["best_none_tokens"]) == (0.75, 400)
    assert result["memory_tokens_to_best_none"] == 40 and result["test_time_ratio"] == 10
    assert result["cost_ratio_at_1"] == 800 / (200 + 400)  # the whole sleep on one question
    assert result["cost_ratio_at_4"] == 800 / (200 + 100) and result["cost_ratio_at_10"] == 800 / (200 + 40)


def test_memory_that_never_reaches_the_baseline_has_no_ratio() -> None:
    table = rows("none/direct@64", [True] * 8, 60, 160) + rows("memory/direct@64", [True, False] * 4, 40, 100)
    result = measured(table, {})
    assert math.isnan(result["test_time_ratio"]) and math.isnan(result["memory_tokens_to_best_none"])
    assert result["cost_ratio_at_4"] == (160 * 0.5) / 100  # half the hull's cost buys its 0.5


def test_intervals_resample_contexts_and_cover_the_estimate() -> None:
    table = rows("none/direct@64", [True, False, True, True, False, True, True, True], 60, 160)
    table += rows("memory/direct@64", [True] * 8, 30, 100)
    summary = accuracy_intervals(table)["none/direct@64"]
    low, high = summary["interval"]
    assert low <= summary["accuracy"] == 0.75 <= high and low < high
    headline = comparison(table, {})
    assert headline["test_time_ratio"]["estimate"] == 2 and headline["test_time_ratio"]["interval"] is not None


def test_a_fact_is_right_when_its_answer_is_a_quantity_the_generator_knows() -> None:
    lines = [
        "Q: How many pens? A: 12 + 7 = 19 → 19",
        "Q: Worth? A: 19 x 3 = 56 → 56",
        "Q: Candidate without working? A: → 57",
        "not a fact line",
    ]
    assert graded_facts(lines, ["19", "57"]) == {"facts": 3, "right": 2}


def test_the_context_families_keep_a_context_in_one_split_and_know_their_quantities() -> None:
    for name in ("multi_query", "bakery", "stateful_gsm"):
        test, dev = load_dataset(name, "test", 40), load_dataset(name, "dev", 40)
        assert not {p.meta["context"] for p in test} & {p.meta["context"] for p in dev}, name
        for problem in test:
            assert problem.answer in problem.meta["quantities"], (name, problem.id)
            assert problem.meta["query"] in problem.question and problem.meta["context"] in problem.question

"""Datasets: generated tasks (reproducible, answers right), splits, public sets, JSONL, grading."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.catalog import load_dataset
from harness.datasets import arithmetic_word_problems, content_hash, countdown, graded_arithmetic, multi_query_contexts
from harness.grading import is_correct
from harness.public_data import load_jsonl
from orchestrator.core.errors import InvalidRequestError
from verifiers.extraction import last_boxed, last_expression


def test_same_seed_same_problems_other_seed_other_problems() -> None:
    assert arithmetic_word_problems(8, seed=3) == arithmetic_word_problems(8, seed=3)
    assert arithmetic_word_problems(8, seed=3) != arithmetic_word_problems(8, seed=4)


def test_answers_are_right() -> None:
    for problem in arithmetic_word_problems(40, seed=0):
        numbers = [int(n) for n in re.findall(r"\d+", problem.question)]
        if problem.question.startswith("Tom"):
            expected = numbers[0] * numbers[1] - numbers[2]
        elif problem.question.startswith("Anna"):
            expected = numbers[2] - numbers[0] * numbers[1]
        elif problem.question.startswith("Sam"):
            expected = numbers[0] * numbers[1] + numbers[2]
        else:
            expected = numbers[0] - numbers[1] + numbers[2] * numbers[3]
        assert problem.answer == str(expected), problem
        assert int(problem.answer) > 0


@pytest.mark.parametrize("name", ["arithmetic", "countdown", "multi_query", "gsm8k", "math500", "gym:chain_sum"])
def test_dev_and_test_splits_are_reproducible_and_disjoint_by_content(name: str) -> None:
    # at the sizes the sweeps use: graded arithmetic's easy grades repeat questions word for word
    # under other ids, and a split by id put 22 of 200 test questions in dev as well
    dev, test = load_dataset(name, "dev", 240), load_dataset(name, "test", 240)
    assert [p.id for p in dev] == [p.id for p in load_dataset(name, "dev", 240)]
    assert [p.id for p in dev[:12]] == [p.id for p in load_dataset(name, "dev", 12)]  # stable in the limit
    assert len(dev) == len(test) == 240 or name == "math500"  # 500 items: about half each
    assert not {p.id for p in dev} & {p.id for p in test}
    assert not {p.content_hash for p in dev} & {p.content_hash for p in test}
    assert not {p.question for p in dev} & {p.question for p in test}


def test_content_hash_ignores_case_and_spacing_and_groups_a_context() -> None:
    assert content_hash("What is  2 + 3?\n") == content_hash("what is 2 + 3?")
    assert content_hash("What is 2 + 3?") != content_hash("What is 2 + 4?")
    first, second = multi_query_contexts(1, seed=0)[:2]
    assert first.question != second.question and first.content_hash == second.content_hash


def test_public_sets_install_offline_with_their_sizes() -> None:
    assert len(load_dataset("gsm8k", "all", 5000)) == 1319
    assert len(load_dataset("math500", "all", 5000)) == 500
    aime = load_dataset("aime", "all", 100)
    assert len(aime) == 45 and all(p.answer.isdigit() for p in aime)
    dev, test = load_dataset("gsm8k", "dev", 5000), load_dataset("gsm8k", "test", 5000)
    assert len(dev) + len(test) == 1319 and 500 < len(dev) < 820


def test_math500_answers_come_from_the_boxed_solution() -> None:
    first = load_dataset("math500", "all", 1)[0]
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert is_correct(first, "(3, \\frac{\\pi}{2})", None)
    assert last_boxed("so \\boxed{\\frac{1}{2}} and \\boxed{7}.") == "7"
    assert last_boxed("no box") is None


def test_graded_arithmetic_keeps_its_grades_and_old_sequences() -> None:
    problems = graded_arithmetic(14, seed=0)
    assert [p.grade for p in problems] == [i % 7 for i in range(14)]
    assert problems[0].question == graded_arithmetic(1, seed=0)[0].question


def test_countdown_targets_are_reachable_and_checked_exactly() -> None:
    for problem in countdown(30, seed=2):
        assert is_correct(problem, None, f"Let me try. The answer is {problem.answer}.")
        numbers, target = problem.meta["numbers"], problem.meta["target"]
        assert len(numbers) in (3, 4) and problem.grade == len(numbers) - 3
        assert not is_correct(problem, None, f"The answer is {target} + 0 * 999.")  # 999 is not given
    assert last_expression("first 2 + 2, then (3 + 4) * 2 = 14.") == "(3 + 4) * 2"


def test_multi_query_contexts_share_one_context_per_group() -> None:
    problems = multi_query_contexts(3, seed=1)
    assert len(problems) == 12
    by_context: dict[str, list] = {}
    for problem in problems:
        by_context.setdefault(problem.meta["context_id"], []).append(problem)
        assert problem.question.startswith(problem.meta["context"])
    assert len(by_context) == 3 and all(len(group) == 4 for group in by_context.values())


def test_reasoning_gym_items_are_graded_by_their_own_scorer() -> None:
    [item] = load_dataset("gym:chain_sum", "dev", 1)
    assert is_correct(item, item.answer, None)
    assert not is_correct(item, str(int(item.answer) + 1), None)


def test_jsonl_in_gsm8k_and_math_formats(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    rows = [
        {"question": "2 + 2?", "answer": "Add them.\n#### 4"},
        {"problem": "Half of 1?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "level": 3},
        {"id": "x7", "problem": "3 + 3?", "answer": "6"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    first, second, third = load_jsonl(path)
    assert (first.answer, second.answer, second.grade, third.id) == ("4", "\\frac{1}{2}", 2, "x7")
    assert len(load_dataset(str(path), "all", 10)) == 3


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"text": "no known fields"}', "expected GSM8K fields"),
        ('{"question": "q?"}', "'answer' is missing"),
        ('{"problem": "p?", "solution": "no box here"}', "no answer"),
    ],
)
def test_a_malformed_line_is_named_by_file_and_line(tmp_path: Path, line: str, says: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "1 + 1?", "answer": "#### 2"}) + "\n" + line + "\n")
    with pytest.raises(InvalidRequestError) as raised:
        load_jsonl(path)
    assert f"{path}:2:" in str(raised.value) and says in str(raised.value)


def test_unknown_datasets_and_splits_say_what_exists() -> None:
    with pytest.raises(InvalidRequestError, match="use one of arithmetic"):
        load_dataset("nope")
    with pytest.raises(InvalidRequestError, match="split must be"):
        load_dataset("arithmetic", "train")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="does not exist"):
        load_dataset("/nowhere/data.jsonl")

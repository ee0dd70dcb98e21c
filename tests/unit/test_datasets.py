"""Generated word problems: reproducible, and their answers follow from their numbers."""

from __future__ import annotations

import re

from harness.datasets import arithmetic_word_problems


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

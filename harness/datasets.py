"""Generated tasks with exact answers, reproducible from a seed.

Arithmetic word problems of two or three steps: a regime where a 135M model finds the
right answer in some of its samples but rarely in most of them — exactly where choosing
and searching well pays off.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """A question and its exact answer."""

    question: str
    answer: str


def _boxes(rng: random.Random) -> Problem:
    boxes, per_box, eaten = rng.randint(2, 6), rng.randint(2, 9), rng.randint(1, 5)
    question = (
        f"Tom has {boxes} boxes with {per_box} apples in each box. He eats {eaten} apples. How many apples are left?"
    )
    return Problem(question, str(boxes * per_box - eaten))


def _shop(rng: random.Random) -> Problem:
    pens, price = rng.randint(2, 6), rng.randint(2, 9)
    paid = pens * price + rng.randint(1, 20)
    question = (
        f"Anna buys {pens} pens that cost {price} dollars each. She pays with {paid} dollars. "
        "How much change does she get?"
    )
    return Problem(question, str(paid - pens * price))


def _pages(rng: random.Random) -> Problem:
    days, per_day, extra = rng.randint(2, 7), rng.randint(3, 12), rng.randint(2, 15)
    question = (
        f"Sam reads {per_day} pages a day for {days} days, then reads {extra} more pages. "
        "How many pages did he read in total?"
    )
    return Problem(question, str(days * per_day + extra))


def _marbles(rng: random.Random) -> Problem:
    start, given, bags, per_bag = rng.randint(10, 40), rng.randint(1, 9), rng.randint(2, 5), rng.randint(2, 6)
    question = (
        f"Lily has {start} marbles. She gives away {given} marbles and then buys {bags} bags "
        f"with {per_bag} marbles each. How many marbles does she have now?"
    )
    return Problem(question, str(start - given + bags * per_bag))


_TEMPLATES = [_boxes, _shop, _pages, _marbles]


def _one_addition(rng: random.Random) -> Problem:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return Problem(f"What is {a} + {b}?", str(a + b))


def _one_multiplication(rng: random.Random) -> Problem:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return Problem(f"What is {a} x {b}?", str(a * b))


def _two_digit_addition(rng: random.Random) -> Problem:
    a, b = rng.randint(11, 49), rng.randint(11, 49)
    return Problem(f"What is {a} + {b}?", str(a + b))


_GRADED = [_one_addition, _one_multiplication, _two_digit_addition, *_TEMPLATES]


def graded_arithmetic(count: int, seed: int = 0) -> list[Problem]:
    """Problems from one operation up to two-step word problems, cycling through the grades.

    The embedded model solves the first grades often and the word problems rarely, so a
    sweep over this set shows where search and voting help.
    """
    rng = random.Random(seed)
    return [_GRADED[index % len(_GRADED)](rng) for index in range(count)]


def arithmetic_word_problems(count: int, seed: int = 0) -> list[Problem]:
    """``count`` word problems, cycling through the templates, identical for the same seed.

    Example: ``arithmetic_word_problems(2, seed=1)[0].answer`` is always the same string.
    """
    rng = random.Random(seed)
    return [_TEMPLATES[index % len(_TEMPLATES)](rng) for index in range(count)]

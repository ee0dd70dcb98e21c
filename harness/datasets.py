"""Generated tasks with exact answers, reproducible from a seed.

Graded arithmetic (one operation up to two-step word problems), Countdown with 3-4
numbers, and stateful multi-query contexts: a regime where a 135M model finds the
right answer in some of its samples but rarely in most of them — exactly where choosing
and searching well pays off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Checker = Literal["math", "countdown", "gym"]


@dataclass(frozen=True)
class Problem:
    """A question, its exact answer and how to check a model's answer against it.

    ``grade`` is the item's known difficulty level (0 = easiest) where the source has
    one; ``checker`` names the exact check (``harness.grading``); ``meta`` holds what that
    check needs (Countdown's numbers and target, a reasoning-gym entry, a context).
    """

    question: str
    answer: str
    id: str = ""
    grade: int = 0
    checker: Checker = "math"
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def content_hash(self) -> str:
        """What the item says, hashed: its context where it has one (all questions over one
        context are one item for splitting), else its question; see ``content_hash``."""
        return content_hash(self.meta.get("context") or self.question)


def content_hash(text: str) -> str:
    """sha256 of ``text`` lower-cased with whitespace collapsed: equal questions hash equal.

    Splits and trained-item refusals compare these, not ids, because generated and public
    sets repeat questions word for word under different ids.
    Example: ``content_hash("What is  2 + 3?") == content_hash("what is 2 + 3?")``.
    """
    normalised = re.sub(r"\s+", " ", text).strip().lower()
    return hashlib.sha256(normalised.encode()).hexdigest()


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


def graded_arithmetic(count: int, seed: int | str = 0) -> list[Problem]:
    """Problems from one operation up to two-step word problems, cycling through the grades.

    The embedded model solves the first grades often and the word problems rarely, so a
    sweep over this set shows where search and voting help. Grades: 0 one-digit addition,
    1 one-digit product, 2 two-digit addition, 3-6 the word-problem templates.
    """
    rng = random.Random(seed)
    problems = []
    for index in range(count):
        grade = index % len(_GRADED)
        made = _GRADED[grade](rng)
        problems.append(dataclasses.replace(made, id=f"arith-{seed}-{index}", grade=grade))
    return problems


def arithmetic_word_problems(count: int, seed: int = 0) -> list[Problem]:
    """``count`` word problems, cycling through the templates, identical for the same seed.

    Example: ``arithmetic_word_problems(2, seed=1)[0].answer`` is always the same string.
    """
    rng = random.Random(seed)
    return [_TEMPLATES[index % len(_TEMPLATES)](rng) for index in range(count)]


def countdown(count: int, seed: int | str = 0) -> list[Problem]:
    """Countdown with 3 (grade 0) or 4 (grade 1) numbers; every target is reachable.

    The target comes from a random expression over the numbers, so a solution exists.
    Example: ``countdown(1, seed=0)[0].meta`` holds ``numbers`` and ``target``.
    """
    rng = random.Random(seed)
    problems = []
    for index in range(count):
        size = 3 + index % 2
        while True:
            numbers = [rng.randint(1, 25) for _ in range(size)]
            expression, target = _random_expression(rng, numbers)
            if target is not None and 1 <= target <= 200:
                break
        listed = ", ".join(map(str, numbers))
        question = (
            f"Use the numbers {listed}, each at most once, with +, -, * and / to make {target}. "
            "Write the expression, then finish with 'The answer is <expression>'."
        )
        meta = {"numbers": numbers, "target": target, "example": expression}
        problems.append(
            Problem(
                question, expression, id=f"countdown-{seed}-{index}", grade=size - 3, checker="countdown", meta=meta
            )
        )
    return problems


def _random_expression(rng: random.Random, numbers: list[int]) -> tuple[str, int | None]:
    """A left-to-right expression over ``numbers`` in random order, with its integer value."""
    order = rng.sample(numbers, len(numbers))
    expression, value = str(order[0]), order[0]
    for number in order[1:]:
        operator = rng.choice("+-*/")
        if operator == "/" and (number == 0 or value % number):
            operator = "+"
        value = {"+": value + number, "-": value - number, "*": value * number, "/": value // max(number, 1)}[operator]
        expression = f"({expression} {operator} {number})"
    return expression[1:-1] if len(order) > 1 else expression, value


def multi_query_contexts(count: int, seed: int | str = 0, questions_per_context: int = 4) -> list[Problem]:
    """``count`` shop contexts with ``questions_per_context`` questions each (stateful tasks).

    Every question carries its context in ``meta["context"]`` and ``meta["context_id"]``, and
    the quantities the context implies in ``meta["quantities"]`` (what a sleep phase's facts are
    graded against); the question text is the context followed by the question, so any strategy
    can answer it. Grades rise with the steps a question needs (0: one lookup-and-add ... 3: four).
    """
    rng = random.Random(seed)
    contexts = []
    for number in range(count):
        red, blue, price, sold, restock = (
            rng.randint(3, 20),
            rng.randint(3, 20),
            rng.randint(2, 9),
            rng.randint(1, 3),
            rng.randint(2, 9),
        )
        context = (
            f"A shop has {red} red pens and {blue} blue pens. Every pen costs {price} dollars. "
            f"On Monday the shop sells {sold} red pens. On Tuesday it receives {restock} new blue pens."
        )
        after = red - sold + blue + restock
        asked = [
            ("How many pens did the shop have before Monday?", red + blue),
            ("How many red pens are left after Monday?", red - sold),
            ("How many blue pens does the shop have after Tuesday?", blue + restock),
            ("What are all the pens in the shop worth after Tuesday, in dollars?", after * price),
        ]
        implied = [red + blue, red - sold, blue + restock, red - sold + blue, after, after * price]
        implied += [(red + blue) * price, sold * price, restock * price]
        contexts.append((f"shop-{seed}-{number}", context, asked, implied))
    return _context_questions(contexts, questions_per_context)


def bakery_contexts(count: int, seed: int | str = 0, questions_per_context: int = 4) -> list[Problem]:
    """``count`` bakery contexts, four questions each: a second stateful family, worded unlike the
    shop and led by multiplication (trays x muffins per tray) instead of sums. Same fields as
    ``multi_query_contexts``.
    """
    rng = random.Random(f"bakery-{seed}")
    names = ["Rosa", "Omar", "Mei", "Tariq", "Lena", "Kofi", "Ines", "Pavel"]
    contexts = []
    for number in range(count):
        name = rng.choice(names)
        trays, per_tray, price = rng.randint(2, 6), rng.randint(6, 12), rng.randint(2, 5)
        baked = trays * per_tray
        sold, given = rng.randint(5, baked // 2), rng.randint(1, 6)
        context = (
            f"{name} runs a bakery. This morning {name} baked {trays} trays of muffins with {per_tray} muffins "
            f"on each tray. Before noon customers bought {sold} muffins, at {price} dollars each. In the "
            f"afternoon {name} gave {given} muffins to a shelter."
        )
        asked = [
            ("How many muffins were baked this morning?", baked),
            ("How many muffins were left at noon?", baked - sold),
            ("How much money did the muffins sold before noon bring in, in dollars?", sold * price),
            ("How many muffins were left at the end of the day?", baked - sold - given),
        ]
        implied = [baked, baked - sold, sold * price, baked - sold - given, sold + given, baked * price]
        contexts.append((f"bakery-{seed}-{number}", context, asked, implied))
    return _context_questions(contexts, questions_per_context)


def _context_questions(
    contexts: list[tuple[str, str, list[tuple[str, int]], list[int]]], questions_per_context: int
) -> list[Problem]:
    """One ``Problem`` per question of each (id, context, questions, implied quantities)."""
    problems = []
    for context_id, context, asked, implied in contexts:
        quantities = sorted({str(value) for value in implied})
        for grade, (text, answer) in enumerate(asked[:questions_per_context]):
            problems.append(
                Problem(
                    f"{context}\n\nQuestion: {text}",
                    str(answer),
                    id=f"{context_id}-q{grade}",
                    grade=grade,
                    meta={"context_id": context_id, "context": context, "query": text, "quantities": quantities},
                )
            )
    return problems

"""Countdown, split by its first operation: the decomposition ``spawn_join`` can impose when the
model cannot plan one itself.

A Countdown problem (numbers, target) becomes sub-problems that each fix a different first
operation ``a op b = r`` and leave a smaller Countdown over the other numbers plus ``r``. A
child's expression over the smaller set is turned back into one over the original numbers by
putting ``(a op b)`` where ``r`` was used.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

_USE_THE_NUMBERS = re.compile(r"numbers\s+([\d,\s]+?)(?:,\s*each|\s+to|\.|$).*?make\s+(-?\d+)", re.I | re.S)
_MAKE_FROM = re.compile(r"(?:make|calculate)\s+(-?\d+)\s+using[^:]*:\s*([\d,\s]+)", re.I)
_EQUALS = re.compile(r"numbers\s+([\d,\s]+?),?\s*create an expression that equals\s+(-?\d+)", re.I)


@dataclass(frozen=True)
class CountdownTask:
    """Numbers to combine (each at most once) and the target to reach."""

    numbers: tuple[int, ...]
    target: int

    def question(self) -> str:
        listed = ", ".join(map(str, self.numbers))
        return (
            f"Use the numbers {listed}, each at most once, with +, -, * and / to make {self.target}. "
            "Write the expression, then finish with 'Result: <expression>'."
        )


@dataclass(frozen=True)
class FirstStep:
    """A first operation and the smaller task it leaves."""

    left: int
    operator: str
    right: int
    value: int
    rest: CountdownTask

    @property
    def expression(self) -> str:
        return f"({self.left} {self.operator} {self.right})"

    def compose(self, child_expression: str) -> str:
        """The child's expression with the first step's value written out as its operation.

        Example: first step ``(25 - 5) = 20``, child ``20 * 4`` -> ``(25 - 5) * 4``.
        """
        replaced, count = re.subn(rf"(?<!\d){self.value}(?!\d)", self.expression, child_expression, count=1)
        return replaced if count else child_expression


def parse_countdown(question: str) -> CountdownTask | None:
    """The numbers and target of a Countdown question (ours, or reasoning-gym's wording)."""
    if match := _USE_THE_NUMBERS.search(question):
        numbers, target = match.group(1), match.group(2)
    elif match := _MAKE_FROM.search(question):
        target, numbers = match.group(1), match.group(2)
    elif match := _EQUALS.search(question):
        numbers, target = match.group(1), match.group(2)
    else:
        return None
    values = tuple(int(n) for n in re.findall(r"\d+", numbers))
    return CountdownTask(values, int(target)) if len(values) >= 2 else None


def first_steps(task: CountdownTask, limit: int) -> list[FirstStep]:
    """Up to ``limit`` distinct first operations: each operator's most promising (leaving a value
    nearest the target) first, then the next of each, and so on."""
    steps: dict[tuple[int, ...], FirstStep] = {}
    for i, j in itertools.permutations(range(len(task.numbers)), 2):
        a, b = task.numbers[i], task.numbers[j]
        rest = [n for k, n in enumerate(task.numbers) if k not in (i, j)]
        for operator, value in _results(a, b):
            remaining = tuple(sorted([*rest, value]))
            steps.setdefault(remaining, FirstStep(a, operator, b, value, CountdownTask(remaining, task.target)))
    by_operator: dict[str, list[FirstStep]] = {}
    for step in sorted(steps.values(), key=lambda s: (min(abs(task.target - n) for n in s.rest.numbers), s.expression)):
        by_operator.setdefault(step.operator, []).append(step)
    interleaved = [s for group in itertools.zip_longest(*by_operator.values()) for s in group if s is not None]
    return interleaved[:limit]  # different operators first: the children explore different ideas


def _results(a: int, b: int) -> list[tuple[str, int]]:
    found = [("+", a + b), ("*", a * b)] if a <= b else []  # commutative: once per pair
    if a > b:
        found.append(("-", a - b))
    if b > 1 and a % b == 0:
        found.append(("/", a // b))
    return found

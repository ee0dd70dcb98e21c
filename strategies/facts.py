"""Derived facts: what a context implies but does not state, and the checks a fact must pass.

A fact is a question about the context, its answer, and the arithmetic that gives it:
``Q: How many red pens are left? A: 15 - 3 = 12 → 12``. The sleep phase keeps a fact only if

1. every equation of the working holds (``Equation.checks``, exact fractions);
2. the working is *grounded* (``chain_grounded``): each operand is a number the context states
   (in digits or as a word such as "twice" or "dozen"), the result of an earlier equation of the
   same working, or the answer of a fact already kept — "1 + 1 = 2" holds but says nothing here;
3. enough of the independent samples that answered the question gave the same answer
   (``strategies.sleep_time``).

Pure logic: reading a working's equations, checking them, grounding them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from verifiers.arith_steps import evaluate

_OPERATOR = re.compile(r"[+*/x×÷]|(?<=[\d)\s])-")
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "twenty": 20, "hundred": 100, "thousand": 1000, "dozen": 12, "twice": 2,
    "double": 2, "doubles": 2, "triple": 3, "triples": 3, "thrice": 3, "half": 2, "halves": 2, "quarter": 4,
    "third": 3, "percent": 100, "%": 100, "week": 7, "weeks": 7, "hour": 60, "hours": 60, "minutes": 60,
}  # fmt: skip
_WORD = re.compile(r"[A-Za-z]+|%")
_LATEX = [
    (re.compile(r"\\text\{[^{}]*\}|\\[()\[\]]|\\[,;!]|\$"), " "),
    (re.compile(r"\\times|\\cdot"), "*"),
    (re.compile(r"\\div"), "/"),
]
_EQUATION = re.compile(r"(?P<expression>[\d.,+\-*/x×÷()\s]*\d[\d.,+\-*/x×÷()\s]*?)\s*=\s*(?P<value>-?[\d,]*\.?\d+)")


@dataclass(frozen=True)
class Equation:
    """One step of a working: the arithmetic, and the value the solution says it gives.

    Example: ``Equation("12 + 7", Fraction(19)).line() == "12 + 7 = 19"``.
    """

    expression: str
    value: Fraction

    def line(self) -> str:
        """The step as it is stored and shown to the model."""
        return f"{self.expression} = {number_text(self.value)}"

    @property
    def operands(self) -> tuple[Fraction, ...]:
        """The numbers the arithmetic uses, in order."""
        return tuple(_as_number(text) for text in _NUMBER.findall(self.expression.replace("$", "")))

    def checks(self) -> bool:
        """Its arithmetic holds exactly."""
        return evaluate(self.expression.replace("$", "")) == self.value


def equations_in(text: str) -> list[Equation]:
    """Every ``a op b = c`` in a worked solution, in order (a chain ``a + b = c = d`` gives its
    first equation; bare numbers and "= 5" after words are not equations).

    Example: ``[e.value for e in equations_in("12 x 3 = 36, then 36 + 4 = 40.")] == [36, 40]``.
    """
    found = []
    for match in _EQUATION.finditer(_plain_math(text)):
        expression = _trimmed(" ".join(match["expression"].split()))
        if _OPERATOR.search(expression.lstrip("-")) and _NUMBER.search(expression):
            found.append(Equation(expression, _as_number(match["value"])))
    return found


def chain_grounded(equations: Sequence[Equation], known: set[Fraction]) -> bool:
    """Every operand of every equation is known, or the result of an earlier one of ``equations``."""
    reached = set(known)
    for equation in equations:
        if not grounded_in(equation, reached):
            return False
        reached.add(equation.value)
    return True


def context_numbers(text: str) -> set[Fraction]:
    """The numbers a text states: in digits, and as the number words ("twice", "dozen", "%") that
    carry one. Example: ``context_numbers("twice as many as 3") == {2, 3}``."""
    found = {_as_number(text) for text in _NUMBER.findall(text)}
    found |= {Fraction(NUMBER_WORDS[word.lower()]) for word in _WORD.findall(text) if word.lower() in NUMBER_WORDS}
    return found


def grounded_in(equation: Equation, known: set[Fraction]) -> bool:
    """Every operand of ``equation`` is a known number (stated by the context, or reached already)."""
    return bool(equation.operands) and all(operand in known for operand in equation.operands)


def number_text(value: Fraction) -> str:
    """A value as a person writes it: ``12``, ``2.5``, or ``1/3`` when it has no short decimal."""
    if value.denominator == 1:
        return str(value.numerator)
    decimal = float(value)
    return f"{decimal:g}" if Fraction(f"{decimal:g}") == value else f"{value.numerator}/{value.denominator}"


def _plain_math(text: str) -> str:
    """LaTeX arithmetic as plain text: ``\\(2 \\text{ pens} \\times 3 = 6\\)`` becomes ``2 * 3 = 6``."""
    for pattern, plain in _LATEX:
        text = pattern.sub(plain, text)
    return text


def _trimmed(expression: str) -> str:
    """An equation's left side without what the match took from the words before it (a stray
    operator, the "x" of "six", an opening bracket the equation does not close)."""
    expression = re.sub(r"^[x×*/+,.\s]+", "", expression).rstrip(" ,.")
    while expression.count("(") > expression.count(")") and expression.startswith("("):
        expression = expression[1:].lstrip()
    return expression


def _as_number(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))

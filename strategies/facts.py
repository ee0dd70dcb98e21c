"""Derived facts: what a context implies but does not state, and the checks a fact must pass.

A fact is a question about the context, its answer, and the arithmetic that gives it:
``Q: How many red pens are left? A: 15 - 3 = 12 → 12``. The sleep phase keeps a fact only if

1. every equation of the working holds (``Fact.checks``, exact fractions);
2. the working is *grounded* (``chain_grounded``): each operand is a number the context states
   (in digits or as a word such as "twice" or "dozen"), the result of an earlier equation of the
   same working, or the answer of a fact already kept — "1 + 1 = 2" holds but says nothing here;
3. enough of the independent samples that answered the question gave the same answer
   (``strategies.sleep_time``).

Pure logic: parsing, checking, grounding, and the line a fact is stored as.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from verifiers.arith_steps import evaluate

# "- 3) label: expression = value", the value maybe with a $ and a trailing unit word or two.
_FACT_LINE = re.compile(
    r"^[\s*\-•]*(?:\d+[.)]\s+)?(?P<label>[^:=\n]{3,120}?)\s*:\s*\$?(?P<expression>[\d.,\s+\-*/x×÷()$]+?)"
    r"\s*=\s*\$?(?P<value>-?[\d,]*\.?\d+)\s*(?:[A-Za-z%]+\s*){0,3}\.?\s*$"
)
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
class Fact:
    """One derived quantity: its label, the arithmetic that gives it, and the value stated.

    Example: ``Fact("pens in all", "12 + 7", Fraction(19)).line() == "pens in all: 12 + 7 = 19"``.
    """

    label: str
    expression: str
    value: Fraction

    def line(self) -> str:
        """The fact as it is stored and shown to the model."""
        return f"{self.label}: {self.expression} = {number_text(self.value)}"

    @property
    def operands(self) -> tuple[Fraction, ...]:
        """The numbers the arithmetic uses, in order."""
        return tuple(_as_number(text) for text in _NUMBER.findall(self.expression.replace("$", "")))

    @property
    def computation(self) -> tuple[tuple[Fraction, ...], Fraction]:
        """What identifies the fact across samples: its operands (as a multiset) and its value."""
        return tuple(sorted(self.operands)), self.value

    def checks(self) -> bool:
        """Its arithmetic holds exactly (and there is arithmetic: a bare number is not a fact)."""
        return evaluate(self.expression.replace("$", "")) == self.value


def parse_facts(text: str) -> list[Fact]:
    """The fact lines of a model's text, in order; other lines are ignored.

    Example: ``parse_facts("1. Red pens left: 15 - 3 = 12 pens")[0].value == 12``.
    """
    facts = []
    for raw in text.splitlines():
        match = _FACT_LINE.match(raw.strip())
        if match is None or not _OPERATOR.search(match["expression"].strip().lstrip("-")):
            continue
        label = " ".join(match["label"].split()).strip(" -*")
        facts.append(Fact(label, " ".join(match["expression"].split()), _as_number(match["value"])))
    return facts


def equations_in(text: str) -> list[Fact]:
    """Every ``a op b = c`` in a worked solution, in order (a chain ``a + b = c = d`` gives its
    first equation; bare numbers and "= 5" after words are not equations).

    Example: ``[f.value for f in equations_in("12 x 3 = 36, then 36 + 4 = 40.")] == [36, 40]``.
    """
    found = []
    for match in _EQUATION.finditer(_plain_math(text)):
        expression = _trimmed(" ".join(match["expression"].split()))
        if _OPERATOR.search(expression.lstrip("-")) and _NUMBER.search(expression):
            found.append(Fact("", expression, _as_number(match["value"])))
    return found


def chain_grounded(equations: Sequence[Fact], known: set[Fraction]) -> bool:
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


def grounded_in(fact: Fact, known: set[Fraction]) -> bool:
    """Every operand of ``fact`` is a known number (stated by the context, or a kept fact's value)."""
    return bool(fact.operands) and all(operand in known for operand in fact.operands)


def agreed(samples: Sequence[Iterable[Fact]], at_least: int) -> list[Fact]:
    """The facts whose computation at least ``at_least`` samples wrote (each sample counted once),
    in the order first seen, each under the label most samples gave it.

    Example: two samples that both write ``... : 3 + 4 = 7`` agree on it, whatever the labels.
    """
    votes: Counter[tuple] = Counter()
    labels: dict[tuple, Counter[str]] = {}
    first: dict[tuple, Fact] = {}
    for sample in samples:
        for fact in {fact.computation: fact for fact in sample}.values():
            votes[fact.computation] += 1
            labels.setdefault(fact.computation, Counter())[fact.label] += 1
            first.setdefault(fact.computation, fact)
    chosen = []
    for key, fact in first.items():
        if votes[key] >= at_least:
            label = labels[key].most_common(1)[0][0]
            chosen.append(Fact(label, fact.expression, fact.value))
    return chosen


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

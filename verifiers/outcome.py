"""Outcome checks: is a final answer right? Used for evaluation and as outcome verifiers."""

from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction

from verifiers.arith_steps import evaluate


def answers_match(predicted: str | None, gold: str) -> bool:
    """Mathematical equivalence of two answers (``"0.5"`` vs ``"\\frac{1}{2}"``), via math-verify.

    Plain numbers are compared exactly first, which is fast and needs no parser.
    """
    if predicted is None:
        return False
    plain_predicted, plain_gold = _as_number(predicted), _as_number(gold)
    if plain_predicted is not None and plain_gold is not None:
        return plain_predicted == plain_gold
    from math_verify import parse, verify

    try:
        return bool(verify(parse(f"${gold}$"), parse(f"${predicted}$")))
    except Exception:  # math-verify raises on unparsable input; unparsable means not equal
        return predicted.strip() == gold.strip()


def _as_number(text: str) -> Fraction | None:
    cleaned = text.strip().replace(",", "").rstrip(".")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def countdown_correct(expression: str | None, numbers: list[int], target: int) -> bool:
    """Countdown: the expression uses each given number at most once and equals the target.

    Example: ``countdown_correct("(25 - 5) * 4", [25, 5, 4, 7], 80)`` is True.
    """
    if not expression:
        return False
    expression = expression.split("=")[0]
    if not re.fullmatch(r"[\d\s+\-*/()x×÷]+", expression):
        return False
    used = Counter(int(n) for n in re.findall(r"\d+", expression))
    available = Counter(numbers)
    if any(used[n] > available[n] for n in used):
        return False
    try:
        ast.parse(expression.replace("×", "*").replace("x", "*").replace("÷", "/"), mode="eval")
    except SyntaxError:
        return False
    return evaluate(expression) == Fraction(target)

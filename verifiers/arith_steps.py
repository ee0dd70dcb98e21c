"""``arith_steps``: a calculator process verifier for arithmetic word problems.

Every ``a op b = c`` (and longer chains such as ``2 + 3 * 4 = 14``) in a step is
evaluated exactly with fractions. A step with a wrong equation scores low; a step whose
equations all hold scores high, higher still when it states an answer. A step with no
arithmetic is neutral. No model involved: this is the embedded default verifier, and
it cannot be fooled by fluent but wrong arithmetic, which a 135M model writes often.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Sequence
from fractions import Fraction

from orchestrator.core.verification import PolicyModel, ScoreRequest
from verifiers.base import BaseVerifier
from verifiers.extraction import extract_answer

WRONG, NEUTRAL, RIGHT, RIGHT_WITH_ANSWER = 0.05, 0.5, 0.8, 0.95

# An expression of numbers and + - * / x × ÷ ( ), an "=", then a number.
# One character class, no nested quantifier: a nested one backtracked exponentially on a long run
# of digits with no "=" after it (2 s at 24 digits; a sample of 60 digits would never return).
_EQUATION = re.compile(r"([\d.,\-+*/x×÷()\s]+?)\s*=\s*\$?(-?[\d,]*\.?\d+)")
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_ANSWER_MARK = re.compile(r"answer is|\\boxed", re.IGNORECASE)


def evaluate(expression: str) -> Fraction | None:
    """Exact value of an arithmetic expression, or ``None`` if it is not one.

    Example: ``evaluate("12 x 3 + 4") == Fraction(40)``.
    """
    cleaned = expression.replace(",", "").replace("×", "*").replace("x", "*").replace("÷", "/").strip()
    if not cleaned or not re.search(r"\d", cleaned):
        return None
    try:
        return _eval_node(ast.parse(cleaned, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, KeyError):
        return None


def _eval_node(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return Fraction(str(node.value))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_eval_node(node.left), _eval_node(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval_node(node.operand)
    raise ValueError("not plain arithmetic")


def check_equations(step: str) -> tuple[int, int]:
    """(equations found, equations that hold) in one step."""
    found = holds = 0
    for left, right in _EQUATION.findall(step):
        value = evaluate(left)
        if value is None or not re.search(r"[-+*/x×÷]", left.strip().lstrip("-")):
            continue  # "= 5" after words, or a bare number: not an equation we can check
        found += 1
        holds += value == Fraction(right.replace(",", ""))
    return found, holds


def score_step(step: str) -> float:
    """Score one step: wrong arithmetic low, checked arithmetic high, no arithmetic neutral."""
    found, holds = check_equations(step)
    if found and holds < found:
        return WRONG
    states_answer = bool(_ANSWER_MARK.search(step)) and extract_answer(step) is not None
    if found:
        return RIGHT_WITH_ANSWER if states_answer else RIGHT
    return NEUTRAL + (0.1 if states_answer else 0.0)


def sample_verdict(steps: Sequence[str]) -> float:
    """The calculator's verdict on a whole sample: does its answer follow from checked arithmetic?

    ``RIGHT_WITH_ANSWER`` when the sample has equations, every one holds, and the answer it
    states is the result of one of them; ``WRONG`` when any equation fails; else ``NEUTRAL``
    (no arithmetic, or an answer no equation produced). Step scores miss this: the last step
    of most samples is just "The answer is 12.", which has no arithmetic of its own.
    Example: ``sample_verdict(["3 * 4 = 12", "The answer is 12."]) == 0.95``.
    """
    results: set[Fraction] = set()
    for step in steps:
        found, holds = check_equations(step)
        if holds < found:
            return WRONG
        for left, right in _EQUATION.findall(step):
            if evaluate(left) is not None and re.search(r"[-+*/x×÷]", left.strip().lstrip("-")):
                results.add(Fraction(right.replace(",", "")))
    answer = extract_answer("\n\n".join(steps))
    try:
        stated = Fraction(answer.replace(",", "")) if answer is not None else None
    except (ValueError, ZeroDivisionError):
        stated = None
    return RIGHT_WITH_ANSWER if stated is not None and stated in results else NEUTRAL


class ArithmeticStepVerifier(BaseVerifier):
    """Checks every equation of every step exactly."""

    name = "arith_steps"
    summary = "a calculator over each step's equations; free"
    spends_budget = False  # a calculator: checking costs no tokens, so it runs even on a spent budget

    async def score(self, batch: Sequence[ScoreRequest], session: PolicyModel) -> list[list[float]]:
        return [[score_step(step) for step in request.steps] for request in batch]


class ArithmeticSampleVerifier(BaseVerifier):
    """``arith_checked``: one verdict for the whole sample (``sample_verdict``), the same at every step,
    so any aggregation reads it: what "sample until one checks" needs."""

    name = "arith_checked"
    summary = "the calculator's verdict on the whole sample, the same at every step; free"
    spends_budget = False

    async def score(self, batch: Sequence[ScoreRequest], session: PolicyModel) -> list[list[float]]:
        return [[sample_verdict(request.steps)] * max(len(request.steps), 1) for request in batch]

"""Pulling the final answer out of a model's free text."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_ANSWER_IS = re.compile(r"answer is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.\s|\.$|$|\n)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_EXPRESSION = re.compile(r"[\d(][\d\s+\-*/()x×÷]*[\d)]")


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``: a ``\\boxed{}``, else an "answer is" phrase, else the last number.

    Example: ``extract_answer("7 + 5 = 12. The answer is 12.")`` returns ``"12"``.
    """
    if boxed := _BOXED.findall(text):
        return boxed[-1].strip()
    if stated := _ANSWER_IS.findall(text):
        phrase = stated[-1].strip().rstrip(".")
        numbers_in_phrase = _NUMBER.findall(phrase)  # "4 apples" -> "4"; "12 - 2 = 10" -> "10"
        return _normalise_number(numbers_in_phrase[-1] if numbers_in_phrase else phrase)
    if numbers := _NUMBER.findall(text):
        return _normalise_number(numbers[-1])
    return None


def _normalise_number(text: str) -> str:
    """``"1,000"`` -> ``"1000"``, ``"12.0"`` -> ``"12"``; other text unchanged."""
    candidate = text.replace(",", "")
    if _NUMBER.fullmatch(candidate):
        number = float(candidate)
        return str(int(number)) if number.is_integer() else candidate
    return text


def last_expression(text: str) -> str | None:
    """The last arithmetic expression with at least one operator (``"... is (3 + 4) * 2."``)."""
    found = [m.group(0) for m in _EXPRESSION.finditer(text) if re.search(r"[+\-*/x×÷]", m.group(0))]
    return found[-1] if found else None

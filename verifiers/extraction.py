"""Pulling the final answer out of a model's free text, in a form votes can group by.

The answer is the last ``\\boxed{}`` (braces balanced, however deep), else an "answer is"
phrase, else the last number (fractions like ``3/4`` included). Numbers come out in one
canonical form, so that equal values vote together: integers on a fast path without a
parser (``"1,000"`` -> ``"1000"``); other numbers exactly, as a decimal when they have a
finite one and as ``p/q`` otherwise (``"0.5"``, ``"1/2"`` and ``"\\frac12"`` all give
``"0.5"``); LaTeX is read by math-verify: a rational value comes out as above (``\\dfrac{3}{4}`` ->
``"0.75"``) and an irrational one as SymPy's LaTeX of it (``\\sqrt{8}`` and ``2\\sqrt{2}``
both give ``"2 \\sqrt{2}"``), which math-verify grades like what the model wrote.
Anything else (an interval, an expression in ``x``, a word) is returned as written.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction
from functools import lru_cache

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(r"answer is[: \t]*([^\n]{1,300})", re.IGNORECASE)  # the rest of the line, bounded
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?![\d.]))?")
_INTEGER = re.compile(r"-?\d{1,3}(?:,\d{3})+|-?\d+")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_LATEX = re.compile(r"\\[A-Za-z]+|\^|_\{")
_FRAC_SHORTHAND = re.compile(r"\\[dt]?frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\})")
_MATH_DELIMITERS = re.compile(r"\$|\\\[|\\\]|\\\(|\\\)")
_TEXT = re.compile(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}")
_WORDS = re.compile(r"\b[A-Za-z]{2,}\s+[A-Za-z]{2,}\b")  # two words in a row: prose, not a value
_EXPRESSION = re.compile(r"[\d(][\d\s+\-*/()x×÷]*[\d)]")
MAX_PARSED_CHARS = 120  # longer "answers" are not parsed: SymPy's time grows fast with size
READ_TAIL_CHARS = 8_000  # the answer is at the end: a longer text is read from its last 8k characters
MAX_DIGITS = 100  # a longer "number" is kept as written (int() refuses past 4,300 digits anyway)


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``, numbers in canonical form (see the module's docstring).

    Examples: ``extract_answer("7 + 5 = 12. The answer is 12.")`` is ``"12"``;
    ``extract_answer("so \\\\boxed{\\\\frac{1}{2}}")`` is ``"0.5"``.
    """
    text = text[-READ_TAIL_CHARS:]  # every pass below is linear, and bounded by this
    if (boxed := last_boxed(text)) is not None:
        return canonical(boxed)
    if stated := _ANSWER_IS.findall(text):
        return _stated_answer(_SENTENCE_END.split(stated[-1], 1)[0])
    if numbers := _NUMBER.findall(text):
        return canonical(numbers[-1])
    return None


def _stated_answer(phrase: str) -> str:
    """What an "answer is" phrase states: the result after its last "=", a number or LaTeX value
    as such, and the last number of a phrase that goes on in words.

    Examples: ``"$5 \\times 120 = 600$"`` -> ``"600"``; ``"4 apples"`` -> ``"4"``; ``"\\sqrt{51}"`` stays.
    """
    phrase = _MATH_DELIMITERS.sub("", phrase).strip().rstrip(".").strip()
    phrase = phrase.rsplit("=", 1)[-1].strip()  # "12 - 2 = 10" states 10
    phrase = _TEXT.sub(r"\1", phrase).strip()
    in_words = _WORDS.search(_LATEX.sub(" ", phrase))
    if not in_words and (_LATEX.search(phrase) or _PLAIN_NUMBER.fullmatch(phrase.replace(" ", ""))):
        return canonical(phrase)
    numbers_in_phrase = _NUMBER.findall(phrase)  # "4 apples" -> "4"
    return canonical(numbers_in_phrase[-1] if numbers_in_phrase else phrase)


def canonical(answer: str) -> str:
    """One written form per numeric value; anything that is not a number, as written (trimmed).

    Examples: ``"1,000"`` -> ``"1000"``; ``"12.0"`` -> ``"12"``; ``"2/4"`` -> ``"0.5"``;
    ``"2.5/100"`` -> ``"0.025"``; ``"1/3"`` -> ``"1/3"``; ``"\\\\dfrac{3}{4}"`` -> ``"0.75"``;
    ``"(1, 2)"`` -> ``"(1, 2)"``.
    """
    text = answer.strip().strip("$").strip()
    if sum(ch.isdigit() for ch in text) > MAX_DIGITS:
        return text
    if _INTEGER.fullmatch(text):  # the common case, without a parser
        return str(int(text.replace(",", "")))
    plain = text.replace(",", "").replace(" ", "")
    if _PLAIN_NUMBER.fullmatch(plain):
        numerator, _, denominator = plain.partition("/")  # "2.5/100": Fraction reads no decimal over a number
        try:
            return _number_form(Fraction(numerator) / Fraction(denominator or 1))
        except ZeroDivisionError:
            return text
    if _LATEX.search(text) and len(text) <= MAX_PARSED_CHARS:
        return _latex_value(text) or text
    return text


def _number_form(value: Fraction) -> str:
    """``value`` as an integer, a finite decimal (exactly, without floats), or ``p/q`` when it has none."""
    if value.denominator == 1:
        return str(value.numerator)
    twos = fives = 0
    denominator = value.denominator
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


@lru_cache(maxsize=4096)
def _latex_value(text: str) -> str | None:
    """The canonical form of a LaTeX answer with a numeric value (math-verify's parse), else None."""
    from math_verify import parse

    expanded = _FRAC_SHORTHAND.sub(lambda m: rf"\frac{{{m[1].strip('{}')}}}{{{m[2].strip('{}')}}}", text)
    # math-verify's parse timeout uses SIGALRM, which exists only on the main thread; elsewhere the
    # length cap bounds the work instead
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        parsed = parse(f"${expanded}$", parsing_timeout=timeout)
    except Exception:  # math-verify raises on input it cannot read: keep the text
        return None
    if not parsed or not getattr(parsed[0], "is_number", False):
        return None
    try:
        return _value_form(parsed[0])
    except Exception:  # SymPy cannot settle this value: keep what the model wrote
        return None


def _value_form(value) -> str:
    """A numeric SymPy value's canonical form: rational as ``_number_form``, else SymPy's LaTeX."""
    import sympy

    value = value.doit()  # math-verify leaves some operations unevaluated, like 10^{3}
    if value.is_Float:
        return canonical(str(value).rstrip("0").rstrip("."))
    if value.is_rational:
        exact = sympy.nsimplify(value)
        if exact.is_Rational:
            return _number_form(Fraction(int(exact.p), int(exact.q)))
    return sympy.latex(value)  # irrational: SymPy's LaTeX of the evaluated value, one form per value


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` (or ``\\fbox``), nested braces included.

    Example: ``last_boxed("so \\\\boxed{\\\\frac{1}{2}}.")`` is ``"\\\\frac{1}{2}"``; a box cut off
    before its closing brace is skipped for the one before it. One pass over the text.
    """
    box_braces = {opening.end() - 1 for opening in _BOX_OPEN.finditer(text)}
    if not box_braces:
        return None
    open_braces: list[int] = []
    found = None
    for index, char in enumerate(text):
        if char == "{":
            open_braces.append(index)
        elif char == "}" and open_braces:
            start = open_braces.pop()
            if start in box_braces:
                found = (start, index)
    return None if found is None else text[found[0] + 1 : found[1]].strip()


def last_expression(text: str) -> str | None:
    """The last arithmetic expression with at least one operator (``"... is (3 + 4) * 2."``)."""
    found = [m.group(0) for m in _EXPRESSION.finditer(text) if re.search(r"[+\-*/x×÷]", m.group(0))]
    return found[-1] if found else None

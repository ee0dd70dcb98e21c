"""Answer extraction: a regression set of model outputs, and equal values voting together."""

from __future__ import annotations

import threading

import pytest

from strategies.allocation import Votes
from verifiers.extraction import canonical, extract_answer
from verifiers.outcome import answers_match

OUTPUTS = [
    # (model output, extracted answer)
    ("7 + 5 = 12. The answer is 12.", "12"),
    ("The answer is: 1,000", "1000"),
    ("first 3 then 4 and finally 42", "42"),
    ("The answer is 12.0.", "12"),
    ("The answer is 4 apples.", "4"),
    ("The answer is 12 - 2 = 10.", "10"),
    ("The answer is yes.", "yes"),
    ("no numbers here", None),
    # fractions and LaTeX: each of these once came out as a bare last number
    ("so we get \\boxed{\\frac{1}{2}} in the end", "0.5"),
    ("Hence \\boxed{\\frac{\\sqrt{3}}{2}}.", "\\frac{\\sqrt{3}}{2}"),
    ("the answer is $\\frac{1}{2}$", "0.5"),
    ("The answer is 3/4", "0.75"),
    ("Each gets 1/3 of the cake.", "1/3"),
    ("The rate is 2.5/100 of the price", "0.025"),  # a decimal over a number once crashed a search
    ("so it is 7/0", "7/0"),
    ("So x = -3.50", "-3.5"),
    ("The answer is $1,000$.", "1000"),
    ("\\boxed{\\dfrac{3}{4}}", "0.75"),
    ("\\boxed{2\\sqrt{2}} and \\boxed{\\sqrt{8}}", "2 \\sqrt{2}"),
    ("\\boxed{10^{3}}", "1000"),
    ("\\boxed{\\frac{216 \\cdot 37 \\cdot 18}{2 \\cdot 3}}", "23976"),  # SymPy leaves it a product
    ("The final answer is \\boxed{(1, 2)}", "(1, 2)"),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
    ("\\boxed{x^2+1}", "x^2+1"),
    ("\\fbox{7}", "7"),
    ("The answer is 7/0.", "7/0"),
]


@pytest.mark.parametrize(("text", "answer"), OUTPUTS)
def test_extract_answer(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    "forms",
    [
        ["0.5", "\\frac12", "1/2", "\\frac{1}{2}", "2/4", "0.50", "\\tfrac{1}{2}"],
        ["\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt 3}{2}", "\\dfrac{\\sqrt{3}}{2}"],
        ["12", "12.0", "$12$", "12.00", "24/2", "\\frac{24}{2}"],
        ["\\frac{2}{\\sqrt{3}}", "\\frac{2\\sqrt{3}}{3}"],
    ],
)
def test_equivalent_answers_vote_together(forms: list[str]) -> None:
    answers = [extract_answer(f"So the answer is \\boxed{{{form}}}.") for form in forms]
    assert len(set(answers)) == 1
    assert Votes.of([*answers, "7", "7"]).leader == answers[0]  # together they outvote two 7s


@pytest.mark.parametrize(
    ("gold", "written"),
    [
        ("\\frac{1}{2}", "0.5"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{2}"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\frac{\\pi}{2}", "\\frac{\\pi}{2}"),
        ("\\frac13", "1/3"),
        ("1000", "10^{3}"),
    ],
)
def test_canonical_answers_still_grade_against_the_gold_latex(gold: str, written: str) -> None:
    assert answers_match(canonical(written), gold)


def test_latex_answers_are_read_off_the_main_thread_too() -> None:
    found: list[str | None] = []
    worker = threading.Thread(target=lambda: found.append(canonical("\\frac{6}{\\sqrt{4}}")))
    worker.start()
    worker.join()
    assert found == ["3"]


def test_an_overlong_answer_is_not_parsed() -> None:
    long = "\\frac{1}{2}" + " + \\frac{1}{2}" * 40
    assert canonical(long) == long


def test_degenerate_output_is_read_in_one_pass_without_crashing() -> None:
    # a model stuck in a loop writes such things; each once took minutes or raised
    assert extract_answer("\\boxed{" * 20_000) is None
    assert extract_answer("The answer is" + " " * 30_000 + "7.") == "7"  # the tail is what is read
    assert extract_answer("9" * 5_000) == "9" * 5_000  # kept as written: int() refuses 4,300+ digits
    assert extract_answer("The answer is 0.12345678901234567891.") == "0.12345678901234567891"  # no float rounding

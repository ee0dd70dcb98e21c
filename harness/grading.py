"""Is a model's answer right? One entry point over every dataset's exact check."""

from __future__ import annotations

import re

from harness.datasets import Problem
from verifiers.extraction import last_expression
from verifiers.outcome import answers_match, countdown_correct


def is_correct(problem: Problem, answer: str | None, output: str | None) -> bool:
    """Grade one attempt: the extracted ``answer`` for math, the ``output`` text otherwise.

    - math: equivalence via math-verify (plain numbers compared exactly);
    - countdown: the stated answer if it is an expression, else the last expression in the
      output, must use the given numbers at most once each and equal the target;
    - gym: the family's own ``score_answer`` (1.0 counts as right) on the extracted answer.
    """
    if problem.checker == "countdown":  # the stated answer if it is an expression, else the output's last one
        stated = answer if answer and re.search(r"\d\s*[+\-*/x×÷]\s*\(?\d", answer) else None
        expression = stated or last_expression(output or "")
        return countdown_correct(expression, problem.meta["numbers"], problem.meta["target"])
    if problem.checker == "gym":
        return _gym_score(problem, answer, output) >= 1.0
    return answers_match(answer, problem.answer)


def _gym_score(problem: Problem, answer: str | None, output: str | None) -> float:
    import reasoning_gym as gym

    score = gym.get_score_answer_fn(problem.meta["family"])
    candidates = [c for c in (answer, _last_line(output)) if c]
    return max((float(score(candidate, problem.meta["entry"])) for candidate in candidates), default=0.0)


def _last_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else None

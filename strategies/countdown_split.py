"""Countdown, split by its first operation: the decomposition ``spawn_join`` can impose when the
model cannot plan one itself.

A Countdown problem (numbers, target) becomes sub-problems that each fix a different first
operation ``a op b = r`` and leave a smaller Countdown over the other numbers plus ``r``. A
child's expression over the smaller set is turned back into one over the original numbers by
putting ``(a op b)`` where ``r`` was used. Each child makes several tries in one request and
keeps the first whose expression checks; once one checks, the parent answers with it.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass

from orchestrator.core.backends.base import SamplingSettings
from strategies.threads import CHILD_PROMPT, NO_RESULT, Thread, ThreadTree, child_result
from verifiers.extraction import last_expression
from verifiers.outcome import countdown_correct

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


def child_expression(text: str) -> str | None:
    """A Countdown child's expression: its ``Result:`` line if that is one, else the last one it wrote
    (small models often state the target, ``Result: 9``, after writing the expression)."""
    stated = child_result(text)
    return last_expression(stated or "") or last_expression(text)


async def solve_child(tree: ThreadTree, child: Thread, step: FirstStep, task: CountdownTask) -> None:
    """One child: ``child_samples`` tries at its smaller task in one request (they share the
    prompt's KV); the first whose expression, composed with ``step``, checks is kept."""
    prompt = tree.session.renderer.render_question(child.task, system=CHILD_PROMPT)
    params = tree.params
    sampling = SamplingSettings(
        n=params.child_samples, temperature=params.temperature, max_tokens=params.thread_max_tokens
    )
    [result] = await tree.session.generate([prompt], sampling)
    tries = [(c.text, child_expression(c.text)) for c in result.completions]
    child.tokens = sum(len(c.token_ids) for c in result.completions)
    child.longest_try = max(len(c.token_ids) for c in result.completions)
    checks = [t for t in tries if t[1] and countdown_correct(step.compose(t[1]), list(task.numbers), task.target)]
    child.text, child.result = (checks or [t for t in tries if t[1]] or tries)[0]
    child.finish()


async def run_split(tree: ThreadTree, root: Thread, task: CountdownTask, children: int, resume_prompt: str) -> None:
    """The imposed split: one child per first operation; the parent answers from the join, resuming
    (under ``resume_prompt``) only when no child's expression checks."""
    first = first_steps(task, children)
    tasks = [step.rest.question() for step in first]
    root.text = f"Splitting by the first operation.\n<spawn>{json.dumps(tasks)}</spawn>"
    root.protocol = "countdown split"

    async def solve(index: int, child: Thread) -> None:
        await solve_child(tree, child, first[index], task)

    results = await tree.run_children(root, tasks, solve)
    composed = [step.compose(r) if r else None for step, r in zip(first, results, strict=True)]
    checked = [c if c and countdown_correct(c, list(task.numbers), task.target) else None for c in composed]
    root.text = root.text[: root.text.rfind("<spawn>")] + _join(first, composed, checked, task.target)
    verified = next((c for c in checked if c), None)
    root.result = verified or next((c for c in composed if c), None)  # unverified: still an expression
    if verified is not None:  # the answer is checked: resuming the parent would only restate it
        root.text += f"The answer is {verified}."
        root.finish()
        return
    await tree.extend(root, resume_prompt)
    stated = last_expression(root.text.rsplit("</join>", 1)[-1])  # the parent's own words after the join
    root.result = stated or root.result
    root.finish()


def _join(first: list[FirstStep], composed: list[str | None], checked: list[str | None], target: int) -> str:
    lines = [
        f"{n}. first {step.expression} = {step.value} => {c or NO_RESULT}"
        + (f" (checks: equals {target})" if ok else "")
        for n, (step, c, ok) in enumerate(zip(first, composed, checked, strict=True), 1)
    ]
    return "<join>\n" + "\n".join(lines) + "\n</join>\n"

"""Math-Shepherd step labels: how often a solution's prefix still ends right when the policy finishes it.

For a stored dev sample cut into steps, each prefix ``steps[:i]`` (all but the whole) is given to
the policy model as the start of its answer and finished ``rollouts`` times in one batched
request (the prefix's KV shared). The step's soft label is the share of those rollouts whose
answer the grader accepts; its hard label is whether any does. The last step's label is the
sample's own outcome. Rollouts are sampled as the sweeps sampled (the best-of-N system prompt,
temperature 0.7), each up to ``max_tokens``.

    examples, tokens = await label_item(session, item, samples=4, rollouts=4, max_tokens=256)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import anyio

from harness.datasets import Problem, content_hash
from harness.grading import is_correct
from harness.reward_data import RewardExample, balanced, solution_steps
from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.session import Session
from orchestrator.core.settings import Settings
from service.runtime import Runtime
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from verifiers.extraction import extract_answer
from verifiers.prm import STEP_JOIN

Label = Literal["soft", "hard"]


def prefix_texts(steps: Sequence[str]) -> list[str]:
    """The answer-so-far after each step but the last, ready to be continued.

    Example: ``prefix_texts(("a", "b", "c")) == ["a\\n\\n", "a\\n\\nb\\n\\n"]``.
    """
    return [STEP_JOIN.join(steps[:count]) + STEP_JOIN for count in range(1, len(steps))]


def share_right(problem: Problem, prefix: str, continuations: Sequence[str]) -> float:
    """The share of continuations of ``prefix`` whose whole answer the grader accepts."""
    right = 0
    for continuation in continuations:
        whole = prefix + continuation
        right += is_correct(problem, extract_answer(whole), whole)
    return right / len(continuations) if continuations else 0.0


async def label_sample(
    session: Session, problem: Problem, text: str, correct: bool, rollouts: int, max_tokens: int, label: Label
) -> RewardExample:
    """One sample's steps with a Math-Shepherd target at each (the last step's is its outcome)."""
    steps = solution_steps(text)
    prefixes = prefix_texts(steps)
    targets: list[float] = []
    if prefixes:
        prompts = [
            session.renderer.render_question(problem.question, system=DEFAULT_SYSTEM_PROMPT, partial_assistant=prefix)
            for prefix in prefixes
        ]
        sampling = SamplingSettings(n=rollouts, temperature=0.7, max_tokens=max_tokens)
        results = await session.generate(prompts, sampling)
        for prefix, result in zip(prefixes, results, strict=True):
            share = share_right(problem, prefix, [completion.text for completion in result.completions])
            targets.append(share if label == "soft" else float(share > 0))
    targets.append(1.0 if correct else 0.0)
    return RewardExample(problem.id, content_hash(problem.question), problem.question, steps, tuple(targets))


async def label_item(
    session: Session, item: dict, *, samples: int, rollouts: int, max_tokens: int, label: Label = "soft"
) -> list[RewardExample]:
    """PRM examples for up to ``samples`` of a signal-sample item's samples (right and wrong in turn)."""
    problem = Problem(item["question"], item["gold"], id=item["id"])
    return [
        await label_sample(session, problem, sample["text"], bool(sample["correct"]), rollouts, max_tokens, label)
        for sample in balanced(item["samples"], samples)
    ]


async def label_items(
    settings: Settings,
    items: Sequence[dict],
    labels_file: Path,
    *,
    samples: int,
    rollouts: int,
    max_tokens: int,
    label: Label = "soft",
    concurrency: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[RewardExample], int]:
    """Step-labelled examples for every item, resumable: each item's examples are appended to
    ``labels_file`` as soon as its rollouts finish, and items already there are not rolled out
    again. Returns the examples and the tokens the rollouts decoded in this run."""
    done = {example.item_id for example in stored_examples(labels_file)}
    todo = [item for item in items if item["id"] not in done]
    decoded, finished, limiter = 0, 0, anyio.Semaphore(concurrency)
    async with Runtime.open(settings) as runtime:

        async def one(item: dict) -> None:
            nonlocal decoded, finished
            async with limiter:
                meter = BudgetMeter(Budget(), runtime.backend.model.shape)
                examples = await label_item(
                    runtime.session(meter), item, samples=samples, rollouts=rollouts, max_tokens=max_tokens, label=label
                )
            decoded += meter.snapshot().completion_tokens
            with labels_file.open("a") as file:
                file.writelines(json.dumps(asdict(example)) + "\n" for example in examples)
            finished += 1
            if on_progress:
                on_progress(finished, len(todo))

        async with anyio.create_task_group() as group:
            for item in todo:
                group.start_soon(one, item)
    wanted = {item["id"] for item in items}
    return [example for example in stored_examples(labels_file) if example.item_id in wanted], decoded


def stored_examples(labels_file: Path) -> list[RewardExample]:
    """The step-labelled examples a (possibly interrupted) labelling run wrote."""
    if not labels_file.exists():
        return []
    rows = [json.loads(line) for line in labels_file.read_text().splitlines() if line.strip()]
    return [
        RewardExample(row["item_id"], row["item_hash"], row["question"], tuple(row["steps"]), tuple(row["targets"]))
        for row in rows
    ]

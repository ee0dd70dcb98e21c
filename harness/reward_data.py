"""What a reward model learns from: questions, solution steps, and a target at the tag after each step.

An outcome reward model (ORM) sees the whole solution as one step and learns whether it was
right (the item's gold answer decides). A process reward model (PRM) sees the solution cut into
steps (``split_steps``) and learns, at each step, how likely it is to end right: Math-Shepherd's
label, the share of short rollouts from that step's prefix that reach the gold answer.

Every example keeps its item's content hash, so training refuses test items and an evaluation
refuses items the model saw, whatever their ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.datasets import content_hash
from orchestrator.core.errors import InvalidRequestError
from strategies.selection import split_steps
from verifiers.prm import STEP_JOIN

Kind = Literal["orm", "prm"]


@dataclass(frozen=True)
class RewardExample:
    """One solution to learn from: its steps and a target P(good) for each of them.

    Example: ``RewardExample("a-1", content_hash("2+3?"), "2+3?", ("2 + 3 = 5",), (1.0,))``.
    """

    item_id: str
    item_hash: str
    question: str
    steps: tuple[str, ...]
    targets: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.steps) != len(self.targets) or not self.steps:
            raise ValueError(f"{self.item_id}: {len(self.steps)} steps but {len(self.targets)} targets")


def solution_steps(text: str) -> tuple[str, ...]:
    """A sample's steps as the PRM reads them: ``split_steps`` pieces, stripped."""
    return tuple(step.strip() for step in split_steps(text, STEP_JOIN))


def outcome_steps(text: str) -> tuple[str, ...]:
    """An ORM's input: the solution as one step, its blank pieces dropped as the PRM's would be
    (the ``orm`` verifier joins a request's steps the same way).

    Example: ``outcome_steps("3 + 4 = 7\\n\\n\\n\\nSo 7.") == ("3 + 4 = 7\\n\\nSo 7.",)``.
    """
    return (STEP_JOIN.join(solution_steps(text)),)


def signal_item_hash(item: dict) -> str:
    """A signal-sample item's content hash, as ``Problem.content_hash`` makes it (its context, else its question)."""
    return content_hash(item.get("context") or item["question"])


def read_signal_items(paths: Iterable[Path]) -> list[dict]:
    """The items of signal-sample files (``benchmarks/signal_samples.py``), dev files only."""
    items: list[dict] = []
    for path in paths:
        if "-dev" not in path.name:
            raise InvalidRequestError(f"{path} is not a dev-split file: a verifier never trains on test items")
        items += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return items


def outcome_examples(items: Iterable[dict], per_item: int | None = None) -> list[RewardExample]:
    """ORM examples: each stored sample's text, labelled by whether its answer was right.

    ``per_item`` keeps at most that many samples of each item, alternating right and wrong ones
    while both last, so an item the model nearly always gets right still shows it a wrong sample.
    """
    examples: list[RewardExample] = []
    for item in items:
        item_hash = signal_item_hash(item)
        for sample in balanced(item["samples"], per_item):
            target = 1.0 if sample["correct"] else 0.0
            examples.append(
                RewardExample(item["id"], item_hash, item["question"], outcome_steps(sample["text"]), (target,))
            )
    return examples


def balanced(samples: list[dict], limit: int | None) -> list[dict]:
    """Up to ``limit`` samples, right and wrong taken in turn (in their stored order) while both last.

    Example: samples right, right, right, wrong with limit 2 give the first right and the wrong one.
    """
    if limit is None or limit >= len(samples):
        return list(samples)
    right = [sample for sample in samples if sample["correct"]]
    wrong = [sample for sample in samples if not sample["correct"]]
    chosen: list[dict] = []
    while len(chosen) < limit and (right or wrong):
        for pile in (right, wrong):
            if pile and len(chosen) < limit:
                chosen.append(pile.pop(0))
    return chosen


def parse_fold(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N): hold out fold K of N. Example: ``parse_fold("0/2") == (0, 2)``."""
    try:
        held_out, folds = (int(part) for part in text.split("/"))
    except ValueError:
        raise InvalidRequestError(f"--fold {text!r}: give K/N, e.g. 0/2") from None
    if not 0 <= held_out < folds:
        raise InvalidRequestError(f"--fold {text!r}: K must be 0..N-1")
    return held_out, folds


def outside_fold(items: Iterable[dict], held_out: int, folds: int) -> list[dict]:
    """The items not in fold ``held_out`` of ``folds`` (by content hash): a model trained on them can
    score that fold's items out of sample (cross-fitting)."""
    return [item for item in items if fold_of(signal_item_hash(item), folds) != held_out]


def fold_of(item_hash: str, folds: int) -> int:
    """An item's fold, fixed by its content hash. Example: ``fold_of("00...0f", 2) == 1``."""
    return int(item_hash[:12], 16) % folds

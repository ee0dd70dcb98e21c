"""Datasets by name, with reproducible dev/test splits.

Names: ``arithmetic``, ``countdown``, ``multi_query`` (generated), ``gsm8k``, ``math500``,
``aime`` (public), ``gym:<family>`` (reasoning-gym), or a path to a ``.jsonl`` file.

Generated and reasoning-gym sets draw each split from its own seeded stream, so dev and
test never share an item. Fixed sets are split by a hash of each item's id: stable
across runs and machines, about half each.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from harness import public_data
from harness.datasets import Problem, countdown, graded_arithmetic, multi_query_contexts
from orchestrator.core.errors import InvalidRequestError

Split = Literal["dev", "test", "all"]
GENERATED = {"arithmetic": graded_arithmetic, "countdown": countdown, "multi_query": multi_query_contexts}
FIXED = {"gsm8k": public_data.gsm8k, "math500": public_data.math500, "aime": public_data.aime}
DATASET_NAMES = [*GENERATED, *FIXED, "gym:<family>", "<file>.jsonl"]


def load_dataset(name: str, split: Split = "dev", limit: int = 20, seed: int = 0) -> list[Problem]:
    """The first ``limit`` items of ``name``'s ``split``.

    Example: ``load_dataset("arithmetic", "dev", 8)`` — the same 8 items on every machine.
    """
    if limit < 1:
        raise InvalidRequestError(f"limit must be at least 1, got {limit}")
    if split not in ("dev", "test", "all"):
        raise InvalidRequestError(f"split must be dev, test or all, got {split!r}")
    if name in GENERATED:
        return GENERATED[name](limit, f"{seed}-{split}")[:limit]  # multi_query makes 4 per context
    if name.startswith("gym:"):
        return public_data.reasoning_gym(name.removeprefix("gym:"), limit, f"{seed}-{split}")
    if name in FIXED:
        return in_split(FIXED[name](), split)[:limit]
    if name.endswith(".jsonl"):
        return in_split(public_data.load_jsonl(name), split)[:limit]
    raise InvalidRequestError(f"unknown dataset {name!r}: use one of {', '.join(DATASET_NAMES)}")


def in_split(problems: list[Problem], split: Split) -> list[Problem]:
    """The items of a fixed set that belong to ``split`` (by a hash of the id)."""
    if split == "all":
        return problems
    wanted = 0 if split == "dev" else 1
    return [p for p in problems if hashlib.sha256(p.id.encode()).digest()[0] % 2 == wanted]

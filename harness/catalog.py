"""Datasets by name, with reproducible dev/test splits.

Names: ``arithmetic``, ``countdown``, ``multi_query`` and ``bakery`` (generated; the last two
multi-question contexts), ``stateful_gsm`` (multi-question contexts from reasoning-gym's
``gsm_symbolic``), ``gsm8k``, ``math500``, ``aime`` (public), ``gym:<family>`` (reasoning-gym),
or a path to a ``.jsonl`` file.

Every set is split by what its items say (``Problem.content_hash``: the normalised question,
or the context for multi-question contexts), not by id: generated and public sets repeat
questions word for word under different ids, and a split by id would put the same question
in both. Generated and reasoning-gym sets draw one seeded stream and keep the items whose hash
falls in the split; fixed sets keep theirs. Stable across runs and machines, about half each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from harness import public_data
from harness.datasets import Problem, bakery_contexts, countdown, graded_arithmetic, multi_query_contexts
from orchestrator.core.errors import InvalidRequestError

Split = Literal["dev", "test", "all"]
GENERATED = {
    "arithmetic": graded_arithmetic,
    "countdown": countdown,
    "multi_query": multi_query_contexts,
    "bakery": bakery_contexts,
    "stateful_gsm": public_data.stateful_gsm_symbolic,
}
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
        return _drawn_until(lambda count: GENERATED[name](count, seed), split, limit)
    if name.startswith("gym:"):
        family = name.removeprefix("gym:")
        return _drawn_until(lambda count: public_data.reasoning_gym(family, count, seed), split, limit)
    if name in FIXED:
        return in_split(FIXED[name](), split)[:limit]
    if name.endswith(".jsonl"):
        return in_split(public_data.load_jsonl(name), split)[:limit]
    raise InvalidRequestError(f"unknown dataset {name!r}: use one of {', '.join(DATASET_NAMES)}")


def in_split(problems: list[Problem], split: Split) -> list[Problem]:
    """The items that belong to ``split``, by the first byte of their content hash (even: dev)."""
    if split == "all":
        return problems
    wanted = 0 if split == "dev" else 1
    return [p for p in problems if int(p.content_hash[:2], 16) % 2 == wanted]


def _drawn_until(draw: Callable[[int], list[Problem]], split: Split, limit: int) -> list[Problem]:
    """The first ``limit`` items of ``split`` in one seeded stream, drawing more until there are enough.

    The generators are prefix-stable (the first k items of a longer draw are the k of a shorter
    one), so the items of a split do not change with ``limit``.
    """
    count = 2 * limit + 8
    while True:
        drawn = draw(count)
        chosen = in_split(drawn, split)
        if len(chosen) >= limit or len(drawn) < count or count > 64 * limit:  # enough, or no more to draw
            return chosen[:limit]
        count *= 2

"""The routing policy ``auto`` follows: difficulty bins, and per bin what to run at each budget.

A policy is a versioned JSON file: the shipped hand-set default, or one ``ttc fit-router``
fits from a dev sweep. ``load_policy`` checks a file completely (every bin present, every
strategy and its params valid) and caches it per file version, so a refit in place is
picked up by the next request.
"""

from __future__ import annotations

import bisect
import json
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from orchestrator.core.errors import ConfigurationError
from strategies.base import REGISTRY

DEFAULT_POLICY = Path(__file__).parent / "policies" / "default.json"
NOT_ROUTABLE = ("auto", "probe")  # a policy entry must name a strategy that answers on its own


class PolicyEntry(BaseModel):
    """Use ``strategy`` with ``params`` when at least ``min_tokens`` of budget remain."""

    min_tokens: int = Field(ge=0)
    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    budget: int | None = Field(None, description="the sweep budget this entry won at (fitted policies)")


class Policy(BaseModel):
    """Difficulty bin edges and, per bin, entries ordered by the budget they need."""

    version: str
    description: str = ""
    difficulty_bins: list[float]
    table: dict[str, list[PolicyEntry]]
    fitted: dict[str, Any] | None = Field(None, description="how a fitted policy was chosen (its dev-sweep winners)")

    def choose(self, difficulty: float, remaining_tokens: int | None) -> tuple[int, PolicyEntry]:
        """The bin of ``difficulty`` and the largest entry the remaining budget affords.

        Example: with bins ``[0.5]``, ``choose(0.7, 1000)`` looks in bin 1.
        """
        bin_index = bisect.bisect_right(self.difficulty_bins, difficulty)
        entries = sorted(self.table[str(bin_index)], key=lambda e: e.min_tokens)
        affordable = [e for e in entries if remaining_tokens is None or e.min_tokens <= remaining_tokens]
        return bin_index, (affordable or entries[:1])[-1]

    def check(self, where: str) -> Policy:
        """Every bin has entries; every entry names a routable strategy with valid params."""
        for bin_index in range(len(self.difficulty_bins) + 1):
            if not self.table.get(str(bin_index)):
                raise ConfigurationError(f"routing policy {where} has no entries for difficulty bin {bin_index}")
        for entries in self.table.values():
            for entry in entries:
                if entry.strategy in NOT_ROUTABLE or entry.strategy not in REGISTRY:
                    raise ConfigurationError(f"routing policy {where} names unusable strategy {entry.strategy!r}")
                REGISTRY[entry.strategy].parse_params(entry.params)
        return self


def load_policy(path: str | Path = DEFAULT_POLICY) -> Policy:
    """Read and check a policy file. Cached per file version: a policy rewritten in place is read again."""
    try:
        version = Path(path).stat().st_mtime_ns
    except OSError as error:
        raise ConfigurationError(f"cannot read the routing policy {path}: {error}") from None
    return _load_policy(str(path), version)


@cache
def _load_policy(path: str, _version: int) -> Policy:
    try:
        policy = Policy.model_validate(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read the routing policy {path}: {error}") from None
    return policy.check(path)

"""The policy ``auto`` follows: how samples are drawn, and per budget the allocation rule.

A policy is a versioned JSON file: the shipped default (fitted by ``ttc fit-router``; how
is written next to it) or one an operator fits from their own dev sweep. Its ``sampling``
is how the dev sweep drew the samples it was fitted on: ``auto`` draws the same way, so
the replayed rule and the online one see the same kind of samples. ``load_policy`` checks
a file completely and caches it per file version, so a refit in place is picked up by the
next request.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.errors import ConfigurationError, InvalidRequestError
from strategies.allocation import Allocation
from strategies.base import REGISTRY, parallel_streams
from strategies.direct import DEFAULT_SYSTEM_PROMPT

DEFAULT_POLICY = Path(__file__).parent / "policies" / "default.json"
FORMAT = "ttc-policy/2"
NOT_ROUTABLE = ("auto", "probe")  # a switch must name a strategy that answers on its own


class Sampling(BaseModel):
    """How every wave's samples are drawn (as the dev sweep's best-of-N pass drew them)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, gt=0.0, le=5.0)
    max_tokens: int = Field(256, ge=16, le=8192)
    logprobs: int = Field(5, ge=0, le=20, description="top-k logprobs: every sample's confidence measures")
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    typical_tokens: int = Field(128, ge=1, description="a sample's usual length: sizes the first wave to the budget")


class BudgetRule(BaseModel):
    """Use ``allocation`` when at least ``min_tokens`` of budget are left."""

    model_config = ConfigDict(extra="forbid")

    min_tokens: int = Field(ge=0)
    allocation: Allocation
    budget: int | None = Field(None, description="the sweep budget this rule was fitted at")


class Policy(BaseModel):
    """How ``auto`` samples, and its allocation rules ordered by the budget they need."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    version: str
    description: str = ""
    sampling: Sampling = Field(default_factory=Sampling)
    rules: list[BudgetRule] = Field(min_length=1)
    fitted: dict[str, Any] | None = Field(None, description="how a fitted policy was chosen (its dev report)")

    def rule_for(self, tokens_left: int | None) -> BudgetRule:
        """The rule of the largest ``min_tokens`` the budget left affords (the smallest if none does).

        Example: with rules at 0 and 1000 tokens, 1500 tokens left use the second.
        """
        ordered = sorted(self.rules, key=lambda rule: rule.min_tokens)
        affordable = [rule for rule in ordered if tokens_left is None or rule.min_tokens <= tokens_left]
        return (affordable or ordered[:1])[-1]

    def widest_wave(self) -> int:
        """The most samples any rule draws at once, or its switch decodes at once."""
        widths = [rule.allocation.widest_wave() for rule in self.rules]
        for rule in self.rules:
            if rule.allocation.switch is not None:
                switch = rule.allocation.switch
                widths.append(parallel_streams(REGISTRY[switch.strategy].parse_params(switch.params)))
        return max(widths)

    def check(self, where: str) -> Policy:
        """The format is this one; every switch names a routable strategy with valid params."""
        if self.format != FORMAT:
            raise ConfigurationError(f"routing policy {where} has format {self.format!r}; this ttc reads {FORMAT!r}")
        for rule in self.rules:
            switch = rule.allocation.switch
            if switch is None:
                continue
            if switch.strategy in NOT_ROUTABLE or switch.strategy not in REGISTRY:
                raise ConfigurationError(f"routing policy {where} switches to unusable strategy {switch.strategy!r}")
            try:
                REGISTRY[switch.strategy].parse_params(switch.params)
            except InvalidRequestError as error:
                raise ConfigurationError(f"routing policy {where}: switch params: {error.message}") from None
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

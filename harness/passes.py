"""A best-of-N pass: the N samples a sweep draws once per item, from which every budget's
best-of-N point is read and every rule is replayed.

A budget-``B`` point takes the longest prefix of the samples whose compute tokens (the pass's
uncached prompt, then each sample's length) fit in ``B``: ``affordable_prefix`` is that rule,
and the one place it is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from orchestrator.core.budget import Usage
from strategies.selection import Sample


def affordable_prefix(prompt_tokens: int, lengths: Sequence[int], budget: int) -> tuple[int, int]:
    """How many of the samples, taken in order, fit in ``budget`` after the prompt, and what they
    cost with it: ``(taken, spent)``.

    Example: ``affordable_prefix(40, [100, 90, 300], 250) == (2, 230)``.
    """
    spent, taken = prompt_tokens, 0
    while taken < len(lengths) and spent + lengths[taken] <= budget:
        spent += lengths[taken]
        taken += 1
    return taken, spent


class SamplePass(BaseModel):
    """One item's pass: the request's usage and its samples, in the order they were drawn."""

    usage: Usage
    samples: list[Sample]

    @property
    def prompt_compute(self) -> int:
        """The prompt tokens the pass computed (those the prefix cache did not hold)."""
        return self.usage.prompt_tokens - self.usage.cached_prompt_tokens

    @property
    def lengths(self) -> list[int]:
        """Each sample's completion tokens (0 where none were recorded)."""
        return [sample.tokens or 0 for sample in self.samples]

    def within(self, budget: int) -> tuple[list[Sample], int]:
        """The samples a budget-``budget`` point draws and its compute tokens (``affordable_prefix``).

        Example: ``samples, spent = stored.within(512)``.
        """
        taken, spent = affordable_prefix(self.prompt_compute, self.lengths, budget)
        return self.samples[:taken], spent

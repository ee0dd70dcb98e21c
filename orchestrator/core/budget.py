"""The budget meter: one per request, shared by every branch and child the request spawns.

It counts what the request spent (tokens by kind, model and verifier calls, wall time,
estimated FLOPs and KV memory traffic, the KV footprint of its search tree) and enforces
the request's limits. Token limits count *compute tokens*: prompt tokens the engine had
to prefill (not those served from the prefix cache) plus completion tokens — so a search
that shares prefixes, which is what tree search is designed to do, is not billed for
KV it never recomputed.

Enforcement: before each model call the caller asks ``admit`` how many completion tokens
the call may produce. The meter reserves the call's whole prompt (as if none of it were
cached) and its completions, in tokens and in estimated effective FLOPs, so concurrent
branches cannot all spend the same remainder; it raises ``BudgetExceededError`` once a
call cannot fit. A request is therefore never charged more compute tokens or FLOPs than
its limits. The deadline counts from when the request was submitted (time in the queue
included) and bounds generation and verification alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from pydantic import BaseModel, ConfigDict, Field, computed_field

from orchestrator.core.costmodel import ModelShape, generation_cost
from orchestrator.core.errors import BudgetExceededError


class Budget(BaseModel):
    """The limits of one request; ``None`` means unlimited on that axis."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(None, ge=1, description="compute tokens: uncached prompt + completion")
    max_flops: float | None = Field(None, gt=0, description="effective FLOPs (compute + 562.5 x KV bytes read)")
    deadline_s: float | None = Field(None, gt=0, description="wall-clock seconds from the request's start")


class Usage(BaseModel):
    """What a request spent. The same record goes to the CLI, the API and the store."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    verifier_calls: int = 0
    wall_time_s: float = 0.0
    flops: float = 0.0
    kv_bytes_read: float = 0.0
    eflops: float = 0.0
    kv_footprint_tokens: int = Field(0, description="search tree KV: unique live-node tokens, summed over depths")
    budget_exhausted: str | None = Field(None, description="the limit that stopped the request, if one did")
    critical_path_tokens: int | None = Field(
        None, description="parallel strategies: tokens of the longest chain of threads that ran one after another"
    )
    sleep_time_tokens: int | None = Field(
        None, description="questions over a context: compute tokens spent precomputing its memory"
    )
    amortised_sleep_tokens: float | None = Field(
        None, description="sleep_time_tokens divided by the questions the context has answered so far"
    )
    replica_resends: int = Field(
        0,
        description="engine requests sent again to the next replica because theirs died while running them "
        "(charged again in full; what the dead replica had decoded is not known, so not counted)",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens, as OpenAI-compatible clients count them."""
        return self.prompt_tokens + self.completion_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def compute_tokens(self) -> int:
        """Tokens the engine actually computed: the quantity ``Budget.max_tokens`` bounds."""
        return self.prompt_tokens - self.cached_prompt_tokens + self.completion_tokens


_SUMMED = (
    "prompt_tokens",
    "cached_prompt_tokens",
    "completion_tokens",
    "model_calls",
    "verifier_calls",
    "wall_time_s",
    "flops",
    "kv_bytes_read",
    "eflops",
    "kv_footprint_tokens",
    "replica_resends",
)


def add_usage(first: Usage, second: Usage) -> Usage:
    """Two requests' spending together (e.g. every precompute of one context)."""
    total = first.model_copy()
    for name in _SUMMED:
        setattr(total, name, getattr(first, name) + getattr(second, name))
    total.budget_exhausted = second.budget_exhausted or first.budget_exhausted
    return total


class BudgetMeter:
    """Counts one request's spending and enforces its ``Budget``.

    Example::

        meter = BudgetMeter(Budget(max_tokens=1000), shape)
        with meter.admit(prompts=4, samples_per_prompt=2, max_tokens=256) as allowed:
            results = await backend.generate(..., max_tokens=allowed)
            meter.charge_generation(prompt_tokens, cached, completion_lengths)
    """

    def __init__(
        self,
        budget: Budget,
        shape: ModelShape | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        waited_s: float = 0.0,
    ) -> None:
        """``waited_s``: how long the request already waited (in a queue); the deadline includes it."""
        self.budget = budget
        self.shape = shape
        self._clock = clock
        self._started = clock() - max(0.0, waited_s)
        self._reserved_tokens = 0
        self._reserved_eflops = 0.0
        self.usage = Usage()

    # --- limits ----------------------------------------------------------------------------

    def remaining_seconds(self) -> float | None:
        """Seconds until the deadline, or ``None`` without one."""
        if self.budget.deadline_s is None:
            return None
        return self.budget.deadline_s - (self._clock() - self._started)

    def remaining_tokens(self) -> int | None:
        """Compute tokens not yet spent nor reserved by calls in flight."""
        if self.budget.max_tokens is None:
            return None
        return self.budget.max_tokens - self.usage.compute_tokens - self._reserved_tokens

    def check(self) -> None:
        """Raise ``BudgetExceededError`` if any limit is already reached."""
        remaining_s = self.remaining_seconds()
        if remaining_s is not None and remaining_s <= 0:
            self._exhaust("deadline", f"the deadline of {self.budget.deadline_s} s has passed")
        remaining = self.remaining_tokens()
        if remaining is not None and remaining <= 0:
            self._exhaust("tokens", f"the token budget of {self.budget.max_tokens} compute tokens is spent")
        if self.budget.max_flops is not None and self.usage.eflops + self._reserved_eflops >= self.budget.max_flops:
            self._exhaust("flops", f"the FLOPs budget of {self.budget.max_flops:.3g} effective FLOPs is spent")

    @contextmanager
    def admit(self, *, prompt_tokens: Sequence[int], samples: Sequence[int], max_tokens: int) -> Iterator[int]:
        """Admit one model call of ``len(prompt_tokens)`` prompts, ``samples[i]`` samples of prompt
        ``i``; yield the per-sample ``max_tokens`` it may use.

        The prompts (as if none were cached) and the completions are reserved, in tokens and in
        estimated effective FLOPs, until the block exits: branches running concurrently share
        the remainder instead of each overspending it.
        """
        self.check()
        streams, prompt_total = sum(samples), sum(prompt_tokens)
        allowed = max_tokens
        remaining = self.remaining_tokens()
        if remaining is not None:
            allowed = min(max_tokens, (remaining - prompt_total) // streams)
            if allowed < 1:
                self._exhaust("tokens", f"the token budget of {self.budget.max_tokens} cannot fit another call")
        allowed, eflops = self._fit_flops(allowed, prompt_tokens, samples)
        reserved = allowed * streams + prompt_total if remaining is not None else 0
        self._reserved_tokens += reserved
        self._reserved_eflops += eflops
        try:
            yield allowed
        finally:
            self._reserved_tokens -= reserved
            self._reserved_eflops -= eflops

    def _fit_flops(self, allowed: int, prompt_tokens: Sequence[int], samples: Sequence[int]) -> tuple[int, float]:
        """The longest completion that fits the FLOPs left, and the call's estimated effective FLOPs."""
        if self.budget.max_flops is None or self.shape is None:
            return allowed, 0.0
        shape, left = self.shape, self.budget.max_flops - self.usage.eflops - self._reserved_eflops

        def cost(length: int) -> float:
            return sum(
                generation_cost(shape, p, 0, [length] * n).eflops for p, n in zip(prompt_tokens, samples, strict=True)
            )

        low, high = 0, allowed  # bisection over lengths: the cost grows with the length
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if cost(middle) <= left else (low, middle - 1)
        if low < 1:
            self._exhaust("flops", f"the FLOPs budget of {self.budget.max_flops:.3g} cannot fit another call")
        return low, cost(low)

    def exhausted(self, limit: str, message: str) -> BudgetExceededError:
        """Record that ``limit`` ended the request (the first limit reached is the one kept) and
        return the error to raise. Example: ``raise meter.exhausted("deadline", "the deadline passed")``."""
        self.usage.budget_exhausted = self.usage.budget_exhausted or limit
        return BudgetExceededError(message, limit=limit)

    def _exhaust(self, limit: str, message: str) -> NoReturn:
        raise self.exhausted(limit, message)

    # --- charging ----------------------------------------------------------------------------

    def charge_generation(
        self, prompt_tokens: int, cached_prompt_tokens: int, completion_lengths: list[int], resends: int = 0
    ) -> None:
        """Charge one engine request: its prompt, cache hits and the length of each sample (and how
        often it was sent again after a replica died under it)."""
        usage = self.usage
        usage.model_calls += 1
        usage.replica_resends += resends
        usage.prompt_tokens += prompt_tokens
        usage.cached_prompt_tokens += cached_prompt_tokens
        usage.completion_tokens += sum(completion_lengths)
        if self.shape is not None:
            cost = generation_cost(self.shape, prompt_tokens, cached_prompt_tokens, completion_lengths)
            usage.flops += cost.flops
            usage.kv_bytes_read += cost.kv_bytes
            usage.eflops += cost.eflops

    def note_critical_path(self, tokens: int) -> None:
        """Record a parallel strategy's critical-path tokens (its threads' tokens are charged as usual)."""
        self.usage.critical_path_tokens = tokens

    def charge_verifier(self, calls: int = 1) -> None:
        """Charge verifier calls (their model tokens, if any, are charged as generations)."""
        self.usage.verifier_calls += calls

    def record_tree_depth(self, live_unique_tokens: int) -> None:
        """Add one search depth's KV footprint: tokens of unique nodes on the live paths."""
        self.usage.kv_footprint_tokens += live_unique_tokens

    def snapshot(self) -> Usage:
        """A copy of the usage so far, with the wall time filled in."""
        usage = self.usage.model_copy()
        usage.wall_time_s = round(self._clock() - self._started, 6)
        return usage

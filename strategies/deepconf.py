"""DeepConf online (Fu et al. 2025): stop unconfident traces while they are decoded.

1. Warm-up: the first wave of traces is decoded whole; each gets its lowest group confidence.
2. Threshold: the confidence that the most confident ``keep`` share of the warm-up reaches, i.e.
   the (1 - keep) quantile of their lowest group confidences (keep 0.1: DeepConf-low, aggressive;
   keep 0.9: DeepConf-high, cautious).
3. Every later trace is streamed, and the engine aborts it as soon as the mean confidence of its
   last ``WINDOW`` tokens falls below the threshold. An aborted trace does not vote, but its
   tokens were computed and are charged.
4. Sampling stops once the leading answer holds ``consensus`` of the confidence-weighted vote.

The savings come from step 3: a trace that wanders stops within a window of where it started
to, instead of running to its end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from orchestrator.core.backends.base import StopCheck, TokenLogprob
from strategies.selection import Sample
from strategies.votes import count_votes
from verifiers.confidence import WINDOW, token_confidence


def online_threshold(warmup: Sequence[Sample], keep: float) -> float | None:
    """The lowest group confidence that the most confident ``keep`` share of the warm-up reaches.

    ``None`` when no warm-up trace was measured. Example: warm-up confidences 1, 2, ..., 10
    with keep 0.1 give 10 (only the most confident tenth passes); with keep 0.9, 2.
    """
    measured = sorted(s.confidence["lowest_group"] for s in warmup if s.confidence and "lowest_group" in s.confidence)
    if not measured:
        return None
    rank = max(0, len(measured) - math.ceil(len(measured) * keep))
    return measured[rank]


def below_threshold(threshold: float, k: int, window: int = WINDOW) -> StopCheck:
    """A stop check: the mean token confidence of the latest ``window`` tokens is below ``threshold``."""

    def check(logprobs: Sequence[TokenLogprob]) -> bool:
        if len(logprobs) < window:
            return False
        latest = logprobs[-window:]
        return sum(token_confidence(position, k) for position in latest) / window < threshold

    return check


def consensus_share(samples: Sequence[Sample]) -> float:
    """The leading answer's share of the vote, each finished trace weighted by its lowest group confidence."""
    weighed = [sample for sample in samples if sample.confidence and "lowest_group" in sample.confidence]
    votes = count_votes([s.answer for s in weighed], [s.confidence["lowest_group"] for s in weighed])
    total = sum(votes.values())
    return max(votes.values()) / total if total > 0 else 0.0

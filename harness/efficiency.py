"""How much compute ``auto`` saves: the efficiency ratio against best-of-N, with a paired bootstrap interval.

The ratio at a budget is the compute tokens best-of-N needs to reach ``auto``'s accuracy divided
by the tokens ``auto`` spent. Best-of-N's tokens are read off the upper concave hull of its
accuracy-vs-tokens points over N = 1..16 and the sweep's budgets (``harness.report.concave_hull``):
a user can mix any two of its configurations over questions, so every point on the chord
between them is the baseline's too, and the hull is the strictest baseline that mixing allows.
Both are measured on the same items, so the interval resamples items once for both (paired).
Where best-of-N never reaches ``auto``'s accuracy the tokens it needs are unknown: its largest
N's tokens are used, so the ratio is a lower bound. Below N = 1's accuracy the hull runs to
(0 tokens, 0 accuracy): answering a share of the items with one sample and the rest not at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from harness.replay import Outcome
from harness.report import concave_hull

BOOTSTRAP = 2000


def tokens_to_reach(curve: Sequence[tuple[float, float]], accuracy: float) -> tuple[float, str]:
    """The tokens a frontier needs to reach ``accuracy``, and whether that is exact or a bound.

    Example: on ``[(100, .2), (300, .4)]`` reaching 0.3 takes 200 tokens ("interpolated").
    """
    if curve[0][1] >= accuracy:
        return curve[0][0], "at most"
    for (cost_a, acc_a), (cost_b, acc_b) in itertools.pairwise(curve):
        if acc_b >= accuracy:
            return cost_a + (cost_b - cost_a) * (accuracy - acc_a) / (acc_b - acc_a), "interpolated"
    return curve[-1][0], "at least"


def ratio(auto_correct: np.ndarray, auto_tokens: np.ndarray, correct: np.ndarray, tokens: np.ndarray) -> tuple:
    """(ratio, note) on these items: the baseline's tokens to match ``auto``'s accuracy over ``auto``'s tokens."""
    # (0, 0): answering nothing; a mix of it and N = 1 reaches any accuracy below N = 1's
    curve = concave_hull([(0.0, 0.0), *zip(tokens.mean(axis=0), correct.mean(axis=0), strict=True)])
    needed, note = tokens_to_reach(curve, float(auto_correct.mean()))
    return needed / float(auto_tokens.mean()), note


def compare(auto: Sequence[Outcome], baseline: tuple[np.ndarray, np.ndarray], seed: int = 0) -> dict:
    """The ratio on all items, and its 95% paired bootstrap interval over items."""
    auto_correct = np.array([o.correct for o in auto], dtype=float)
    auto_tokens = np.array([o.tokens for o in auto], dtype=float)
    correct, tokens = baseline
    value, note = ratio(auto_correct, auto_tokens, correct, tokens)
    rng = np.random.default_rng(seed)
    resampled = []
    for _ in range(BOOTSTRAP):
        picked = rng.integers(0, len(auto), len(auto))
        resampled.append(ratio(auto_correct[picked], auto_tokens[picked], correct[picked], tokens[picked])[0])
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {"ratio": value, "ci95": [float(low), float(high)], "note": note}


def accuracy_difference(auto: Sequence[Outcome], baseline: Sequence[Outcome], seed: int = 0) -> dict:
    """``auto``'s accuracy less the baseline's on the same items, with a 95% paired bootstrap interval."""
    return paired_difference([b.correct for b in baseline], [a.correct for a in auto], seed)


def paired_difference(first: Sequence[float], second: Sequence[float], seed: int = 0) -> dict:
    """The mean of ``second - first`` over the same items, with a 95% bootstrap interval that
    resamples items (both values of an item together)."""
    differences = np.array(second, dtype=float) - np.array(first, dtype=float)
    rng = np.random.default_rng(seed)
    means = [differences[rng.integers(0, len(differences), len(differences))].mean() for _ in range(BOOTSTRAP)]
    low, high = np.percentile(means, [2.5, 97.5])
    return {"difference": float(differences.mean()), "ci95": [float(low), float(high)]}

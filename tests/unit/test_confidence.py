"""Confidence measures from token logprobs: hand-computed cases."""

from __future__ import annotations

import math

import pytest

from orchestrator.core.backends.base import TokenLogprob
from verifiers.confidence import (
    answer_logprob,
    as_score,
    group_confidences,
    token_confidence,
    token_self_certainty,
    trace_confidence,
)


def position(token: str, logprob: float, *others: float) -> TokenLogprob:
    return TokenLogprob(
        token=token, logprob=logprob, top={token: logprob, **{f"alt{i}": v for i, v in enumerate(others)}}
    )


def test_token_confidence_is_minus_the_mean_top_k_logprob() -> None:
    peaked = position("7", -0.01, -9.0, -10.0, -11.0, -12.0)
    flat = position("7", -1.5, -1.6, -1.7, -1.6, -1.7)
    assert token_confidence(peaked, 5) == pytest.approx((0.01 + 9 + 10 + 11 + 12) / 5)
    assert token_confidence(flat, 5) < 2 < token_confidence(peaked, 5)
    assert token_confidence(peaked, 2) == pytest.approx((0.01 + 9) / 2)  # only the k largest count


def test_groups_slide_over_the_trace() -> None:
    assert group_confidences([1, 2, 3, 4], window=2) == [1.5, 2.5, 3.5]
    assert group_confidences([1, 2], window=16) == [1.5]  # shorter than a window: one group
    assert group_confidences([], window=4) == []


def test_self_certainty_spreads_the_unknown_mass_evenly() -> None:
    certain = position("a", math.log(0.99), math.log(0.005), math.log(0.005))
    unsure = position("a", math.log(0.34), math.log(0.33), math.log(0.33))
    vocab = 1000
    # by hand: -log V - (1/V) * (sum of the known log p + (V - k) * log(rest / (V - k)))
    rest = 1 - 0.99 - 0.005 - 0.005
    by_hand = -math.log(vocab) - (math.log(0.99) + 2 * math.log(0.005) + 997 * math.log(max(rest, 1e-12) / 997)) / vocab
    assert token_self_certainty(certain, 3, vocab) == pytest.approx(by_hand)
    assert token_self_certainty(certain, 3, vocab) > token_self_certainty(unsure, 3, vocab)


def test_the_answer_span_is_found_in_the_tokens() -> None:
    tokens = [
        position(t, lp)
        for t, lp in [("The", -0.1), (" answer", -0.2), (" is", -0.1), (" 1", -0.5), ("2", -1.5), (".", -0.1)]
    ]
    assert answer_logprob(tokens) == pytest.approx((-0.5 - 1.5) / 2)
    assert answer_logprob([position("no", -0.1), (position(" answer", -0.2))]) is None


def test_a_trace_gets_every_measure_and_scores_stay_in_range() -> None:
    tokens = [position("3", -0.1, -8.0), (position(" + 4 = 7", -0.2, -6.0))] * 20
    tokens += [position(t, -0.05, -9.0) for t in [" The", " answer", " is", " 7", "."]]
    measures = trace_confidence(tokens, k=2, vocab_size=49_152)
    assert set(measures) == {"mean", "lowest_group", "bottom_10", "tail", "self_certainty", "answer_logprob"}
    assert measures["lowest_group"] <= measures["bottom_10"] <= measures["mean"] + 1e-9
    for name, value in measures.items():
        assert 0.0 <= as_score(name, value) <= 1.0
    assert as_score("lowest_group", 10.0) > as_score("lowest_group", 2.0)
    assert as_score("answer_logprob", None) == 0.0

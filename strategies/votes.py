"""Counting votes: the one place answers are tallied, for every rule that reads a vote.

A sample without an answer does not vote. Answers are kept in the order they were first drawn,
so a tie goes to the answer drawn first (what ``ranked`` returns first).
"""

from __future__ import annotations

from collections.abc import Sequence


def count_votes(answers: Sequence[str | None], weights: Sequence[float] | None = None) -> dict[str, float]:
    """Votes per distinct answer: one per sample, or its weight when ``weights`` are given.

    Example: ``count_votes(["4", None, "5", "4"]) == {"4": 2.0, "5": 1.0}``;
    ``count_votes(["4", "5"], [0.2, 0.9]) == {"4": 0.2, "5": 0.9}``.
    """
    totals: dict[str, float] = {}
    for index, answer in enumerate(answers):
        if answer is not None:
            totals[answer] = totals.get(answer, 0.0) + (1.0 if weights is None else weights[index])
    return totals


def ranked(totals: dict[str, float]) -> list[tuple[str, float]]:
    """The answers by votes, most first; a tie keeps the order they were first drawn.

    Example: ``ranked({"5": 1.0, "4": 2.0, "7": 1.0}) == [("4", 2.0), ("5", 1.0), ("7", 1.0)]``.
    """
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)

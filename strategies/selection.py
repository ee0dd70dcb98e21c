"""Choosing among complete samples: votes, verifier-weighted votes, argmax, and when a vote is decided.

One ``Sample`` type carries what every selection rule may look at — the text, its extracted
answer, its completion tokens, its verifier score, its confidence (token-level measures, to
come) — so best-of-N, ``auto``'s probe and the sweep's re-selection of stored samples choose
the same way. A strategy's trace keeps each sample as ``sample.model_dump()``, read back with
``Sample.model_validate``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.backends.base import Completion
from orchestrator.core.verification import TextEmbedder
from strategies.votes import count_votes
from verifiers.confidence import trace_confidence
from verifiers.extraction import extract_answer

Rule = Literal["majority", "weighted", "argmax"]
VoteBy = Literal["exact", "meaning"]


class Sample(BaseModel):
    """One complete sample and what is known about it."""

    model_config = ConfigDict(frozen=True)

    text: str
    answer: str | None
    tokens: int | None = Field(None, description="completion tokens")
    score: float | None = Field(None, description="verifier score in [0, 1], when a verifier scored it")
    confidence: dict[str, float] | None = Field(
        None, description="confidence measures of its tokens (verifiers.confidence), when drawn with logprobs"
    )
    cut_off: bool = Field(False, description="decoding stopped at max_tokens or an abort, not at the model's end")
    stopped: bool = Field(False, description="DeepConf online stopped it as unconfident: it does not vote")


class Choice(BaseModel):
    """The chosen answer, the sample that states it, and the votes that chose it."""

    answer: str | None
    sample: Sample | None
    tally: dict[str, float] | None = None


def sample_of(
    completion: Completion,
    *,
    score: float | None,
    top_k: int,
    vocab_size: int,
    vote_by: VoteBy = "exact",
    stopped: bool = False,
) -> Sample:
    """A drawn completion as a ``Sample``: its answer, length, score, and (drawn with ``top_k``
    logprobs) its confidence measures."""
    confidence = trace_confidence(completion.logprobs, k=top_k, vocab_size=vocab_size) if completion.logprobs else None
    return Sample(
        text=completion.text,
        answer=answer_of(completion.text, vote_by),
        tokens=len(completion.token_ids),
        score=score,
        confidence=confidence,
        cut_off=completion.finish_reason != "stop",
        stopped=stopped,
    )


def answer_of(text: str, vote_by: VoteBy = "exact") -> str | None:
    """The answer a sample votes for: the extracted answer; for meaning-votes over free text,
    else its last non-empty line.

    Example: ``answer_of("7 + 5 = 12. The answer is 12.") == "12"``.
    """
    answer = extract_answer(text)
    if answer is None and vote_by == "meaning":
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[-1] if lines else None
    return answer


def split_steps(text: str, delimiter: str = "\n\n") -> tuple[str, ...]:
    """A sample's steps for a step verifier: its non-blank pieces between delimiters (the whole text if none).

    Example: ``split_steps("3 + 4 = 7\\n\\nThe answer is 7.") == ("3 + 4 = 7", "The answer is 7.")``.
    """
    return tuple(step for step in text.split(delimiter) if step.strip()) or (text,)


def tally(samples: Sequence[Sample], rule: Rule = "majority") -> dict[str, float]:
    """Votes per distinct answer: one per sample, or its verifier score with ``weighted``.

    Samples without an answer do not vote. Example: two samples answering "4" and one "5"
    give ``{"4": 2.0, "5": 1.0}`` by majority.
    """
    weights = [sample.score or 0.0 for sample in samples] if rule == "weighted" else None
    return count_votes([sample.answer for sample in samples], weights)


def vote_is_decided(totals: dict[str, float], remaining: int) -> bool:
    """True when no other answer can catch the leader with ``remaining`` more votes of weight <= 1.

    Example: ``vote_is_decided({"12": 5, "13": 1}, remaining=3)`` is True.
    """
    if not totals:
        return False
    ranked = sorted(totals.values(), reverse=True)
    runner_up = ranked[1] if len(ranked) > 1 else 0.0
    return ranked[0] - runner_up > remaining


def leader_stays_probability(totals: dict[str, float], draws: int = 4000) -> float:
    """Adaptive-Consistency's stop statistic: P(the leading answer's true share is the largest).

    The answer shares get a Dirichlet posterior (uniform prior, the vote counts, and one pseudo-answer
    for everything not seen yet); the probability is a seeded Monte Carlo estimate.
    Example: ``{"12": 7}`` gives about 0.99; ``{"12": 2, "13": 2}`` about 0.5.
    """
    if not totals:
        return 0.0
    counts = sorted(totals.values(), reverse=True)
    alpha = np.array([*counts, 0.0]) + 1.0
    shares = np.random.default_rng(0).dirichlet(alpha, size=draws)
    return float(np.mean(np.argmax(shares, axis=1) == 0))


def window_agrees(window: Sequence[Sample]) -> bool:
    """ESC's stop test: every sample of the latest window states the same answer."""
    answers = {sample.answer for sample in window}
    return len(window) > 0 and len(answers) == 1 and None not in answers


def most_confident(samples: Sequence[Sample], share: float, measure: str) -> list[Sample]:
    """DeepConf offline: the ``share`` of samples (at least one) with the highest ``measure``, in drawing order.

    Samples without that measure rank last. Example: ``most_confident(samples, 0.1, "lowest_group")``.
    """
    keep = max(1, math.ceil(len(samples) * share))

    def confidence(sample: Sample) -> float:
        value = (sample.confidence or {}).get(measure)
        return value if value is not None else -math.inf

    kept = set(sorted(range(len(samples)), key=lambda i: confidence(samples[i]), reverse=True)[:keep])
    return [sample for index, sample in enumerate(samples) if index in kept]


def agreement(samples: Sequence[Sample]) -> float:
    """The share of samples that state the most common answer (0 when none states one).

    Example: answers ``["4", "4", "5", None]`` agree at 0.5.
    """
    totals = tally(samples)
    return max(totals.values()) / len(samples) if totals else 0.0


def choose(samples: Sequence[Sample], rule: Rule) -> Choice:
    """The answer ``rule`` picks: the most votes (majority, weighted; first drawn wins a tie)
    or the single best-scored sample (argmax).

    Example: ``choose(samples, "majority").answer`` is the most common answer.
    """
    if not samples:
        return Choice(answer=None, sample=None)
    if rule == "argmax":
        best = max(samples, key=lambda sample: sample.score or 0.0)
        return Choice(answer=best.answer, sample=best)
    totals = tally(samples, rule)
    if not totals:
        return Choice(answer=None, sample=samples[0], tally=totals)
    winner = max(totals, key=totals.__getitem__)
    stating = next(sample for sample in samples if sample.answer == winner)
    return Choice(answer=winner, sample=stating, tally=totals)


async def canonical_by_meaning(samples: Sequence[Sample], threshold: float, embedder: TextEmbedder) -> list[Sample]:
    """Each sample with its answer replaced by the first answer that means the same, so they vote together.

    Example: answers ``["Paris", "It is Paris.", "Rome"]`` become ``["Paris", "Paris", "Rome"]``
    when the first two embed closer than ``threshold`` (cosine similarity, by ``session.embedder``).
    """
    from verifiers.semantic import group_by_meaning

    distinct = list(dict.fromkeys(s.answer for s in samples if s.answer is not None))
    labels = await group_by_meaning(embedder, distinct, threshold)
    first_of_label: dict[int, str] = {}
    for answer, label in zip(distinct, labels, strict=True):
        first_of_label.setdefault(label, answer)
    representative = {answer: first_of_label[label] for answer, label in zip(distinct, labels, strict=True)}
    return [s if s.answer is None else s.model_copy(update={"answer": representative[s.answer]}) for s in samples]

"""Sequential allocation: after each wave of samples, answer now, draw another wave, or switch to a search.

``auto`` runs this online and the harness replays it offline on stored samples, so both
call the same ``decide``. The rule reads only what the samples drawn so far show — how
many there are, how many state the leading answer and what share of the votes that is —
and the tokens left:

0. **accepted** (with ``accept_score``): a sample the verifier scores at least that high (the
   calculator checks its arithmetic) answers at once: sample until one checks.
1. **settled**: the leader holds at least ``stop_share`` of the votes with at least
   ``stop_votes`` votes. More samples would rarely overturn it.
2. **unsettled**: after ``give_up_after`` samples the leader still holds less than
   ``give_up_share``. On a question the model cannot do the votes scatter, and more of
   them buy little; the rule then switches to ``switch`` (a step search) if it has one and
   the budget left affords it, else answers with the plurality.
3. **spent**: ``max_samples`` are in, or the tokens left cannot pay for one more sample of
   the length seen so far.
4. Otherwise another wave of ``wave`` samples (fewer if the budget affords fewer).

Example: with the defaults, four samples answering 12, 12, 12, 7 are settled (0.75 share, 3 votes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from strategies.votes import count_votes, ranked

Action = Literal["answer", "wave", "switch"]


class Switch(BaseModel):
    """The step search an unsettled question switches to, with the budget left."""

    model_config = ConfigDict(extra="forbid")

    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    min_tokens: int = Field(0, ge=0, description="switch only when at least this many tokens are left")
    vote_with_samples: bool = Field(
        False,
        description="seed the answer with what was drawn: the search's answer joins the samples' vote as one "
        "more vote and wins ties (see joined_vote)",
    )


class Allocation(BaseModel):
    """One budget's rule: wave sizes and the thresholds that end sampling."""

    model_config = ConfigDict(extra="forbid")

    first_wave: int = Field(4, ge=1, le=64, description="samples in the first wave (the probe and first votes)")
    wave: int = Field(4, ge=1, le=64, description="samples in every later wave")
    max_samples: int = Field(16, ge=1, le=256)
    stop_share: float = Field(0.75, gt=0.0, le=1.0, description="settled: the leader holds this share of votes")
    stop_votes: int = Field(3, ge=1, description="settled: ...with at least this many votes")
    give_up_after: int | None = Field(8, ge=1, description="unsettled: judged after this many samples (None: never)")
    give_up_share: float = Field(0.3, ge=0.0, le=1.0, description="unsettled: the leader's share is below this")
    accept_score: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="answer with the first sample the verifier scores at least this (None: votes only)",
    )
    switch: Switch | None = None

    @model_validator(mode="after")
    def _waves_fit(self) -> Allocation:
        if self.first_wave > self.max_samples:
            raise ValueError(f"first_wave ({self.first_wave}) exceeds max_samples ({self.max_samples})")
        return self

    def widest_wave(self) -> int:
        return max(self.first_wave, self.wave)


@dataclass(frozen=True)
class Votes:
    """What the samples drawn so far say, without knowing the answer."""

    samples: int
    leader: str | None
    leader_votes: int
    runner_up_votes: int

    @classmethod
    def of(cls, answers: Sequence[str | None]) -> Votes:
        """Example: ``Votes.of(["4", "4", "5", None])`` has leader "4" with 2 votes of 4 samples."""
        order = ranked(count_votes(answers))
        leader, leader_votes = order[0] if order else (None, 0.0)
        return cls(len(answers), leader, int(leader_votes), int(order[1][1]) if len(order) > 1 else 0)

    @property
    def share(self) -> float:
        """The leader's votes over every sample drawn (a sample without an answer counts against it)."""
        return self.leader_votes / self.samples if self.samples else 0.0


@dataclass(frozen=True)
class Decision:
    """What to do after a wave, why, and what it was decided from (for the trace and events)."""

    action: Action
    reason: str
    size: int = 0
    features: dict[str, Any] = field(default_factory=dict)


def decide(
    rule: Allocation, votes: Votes, tokens_left: int | None, tokens_per_sample: float, accepted: str | None = None
) -> Decision:
    """The next move after a wave: ``tokens_left`` is the budget left (None: unlimited),
    ``tokens_per_sample`` what one more sample is expected to cost, ``accepted`` the answer of the
    first sample the verifier accepts (``first_accepted``), if any."""
    features = {
        "samples": votes.samples,
        "leader": votes.leader,
        "leader_votes": votes.leader_votes,
        "share": round(votes.share, 3),
        "margin": votes.leader_votes - votes.runner_up_votes,
        "tokens_left": tokens_left,
    }
    if rule.accept_score is not None and accepted is not None:
        return Decision("answer", f"accepted: a sample answering {accepted} checks", features=features)
    if votes.share >= rule.stop_share and votes.leader_votes >= rule.stop_votes:
        return Decision("answer", f"settled: {votes.leader_votes} of {votes.samples} agree", features=features)
    if rule.give_up_after is not None and votes.samples >= rule.give_up_after and votes.share < rule.give_up_share:
        if rule.switch is not None and (tokens_left is None or tokens_left >= rule.switch.min_tokens):
            return Decision("switch", f"unsettled after {votes.samples}: switch to {rule.switch.strategy}", 0, features)
        return Decision("answer", f"unsettled after {votes.samples}: more samples rarely settle it", features=features)
    affordable = rule.max_samples - votes.samples
    if tokens_left is not None:
        affordable = min(affordable, samples_affordable(tokens_left, tokens_per_sample))
    if affordable < 1:
        why = "max_samples drawn" if votes.samples >= rule.max_samples else "the budget left affords no more samples"
        return Decision("answer", why, features=features)
    size = min(rule.wave, affordable)
    return Decision("wave", f"{votes.leader_votes} of {votes.samples} agree: {size} more", size, features)


def first_accepted(
    answers: Sequence[str | None], scores: Sequence[float | None], threshold: float | None
) -> str | None:
    """The answer of the first sample with an answer whose score reaches ``threshold`` (None: none, or no threshold).

    Example: answers 5, 4 scored 0.05, 0.95 with threshold 0.9 give "4".
    """
    if threshold is None:
        return None
    for answer, score in zip(answers, scores, strict=True):
        if answer is not None and score is not None and score >= threshold:
            return answer
    return None


def final_answer(answers: Sequence[str | None], scores: Sequence[float | None], rule: Allocation) -> str | None:
    """What a rule answers with: the accepted sample's answer if one checks, else the vote's leader."""
    return first_accepted(answers, scores, rule.accept_score) or Votes.of(answers).leader


def joined_vote(answers: Sequence[str | None], searched: str | None) -> str | None:
    """The samples' vote with a switched-to search's answer as one more vote; a tie goes to the
    search, which cost more than a sample. Without a search answer, the samples' leader.

    Example: samples 4, 4, 5 and a search answering 5 give 5 (two votes each); a search answering
    7 gives 4 (two votes against one).
    """
    tally = count_votes(answers)
    order = ranked(tally)
    leader = order[0][0] if order else None  # as ``Votes.of``: the first drawn wins a tie
    if searched is None or leader is None:
        return searched if searched is not None else leader
    return searched if tally.get(searched, 0.0) + 1 >= tally[leader] else leader


def mean_length(lengths: Sequence[int], typical: int) -> float:
    """What one more sample is expected to cost: the mean length so far, else ``typical``."""
    return sum(lengths) / len(lengths) if lengths else float(typical)


def first_wave_size(rule: Allocation, tokens_left: int | None, tokens_per_sample: float) -> int:
    """Samples in the first wave: ``rule.first_wave``, fewer if the budget affords fewer, but one
    whenever any token is left (a short sample may still answer); 0 when none is."""
    if tokens_left is None:
        return rule.first_wave
    if tokens_left < 1:
        return 0
    return max(1, min(rule.first_wave, samples_affordable(tokens_left, tokens_per_sample)))


def samples_affordable(tokens_left: int, tokens_per_sample: float) -> int:
    """Samples of the expected length that the tokens left pay for, and one more when what is left
    over is at least half a sample: the meter caps its length, and a short one still answers.

    Example: 300 tokens at 120 a sample afford 3 (2 whole, and 60 left is half of one).
    """
    whole, rest = divmod(tokens_left, max(1.0, tokens_per_sample))
    return int(whole) + (1 if rest >= max(1.0, tokens_per_sample) / 2 else 0)

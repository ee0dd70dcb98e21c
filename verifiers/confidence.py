"""Confidence read from the policy model's own token distribution: signals that need no reward model.

From the top-k log-probabilities the backends return with each sampled token:

- **DeepConf token confidence** (Fu et al. 2025): ``C_i = -(1/k) Σ_j log P_i(j)`` over the top k
  candidates at position i. A peaked distribution has one likely token and k - 1 very unlikely
  ones, so C is high; a flat one has k similar candidates, so C is low. Per trace:
  - ``mean``: the mean of C over the trace;
  - ``lowest_group``: the lowest mean of C over a sliding window of ``WINDOW`` tokens;
  - ``bottom_10``: the mean of the lowest 10% of those windows (at least one window);
  - ``tail``: the mean of C over the last ``TAIL`` tokens, where the answer is stated.

  The paper slides 1024–2048-token windows over traces of about 10,000 tokens. Our traces are
  about 100 tokens, so ``WINDOW`` = 16: about one equation or sentence, and about the same share
  of the trace. A single unsure token then moves a window noticeably, but a whole step has to be
  unsure to make a window the lowest.
- **Self-certainty** (Kang et al. 2025): per token, ``KL(U ‖ P) = -log V - (1/V) Σ_v log P(v)``,
  averaged over the trace. Only the top k probabilities are known. The rest of the mass is
  spread evenly over the other V - k tokens: an approximation, which overstates the flatness of
  the tail.
- **Answer log-probability**: the mean log-probability of the sampled tokens that spell the final
  answer (the last occurrence of the extracted answer in the text).

``trace_confidence`` computes all of them for one sample. The ``confidence`` verifiers turn one
measure into a score in [0, 1] (a fixed monotone map), so every selection rule can use them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from orchestrator.core.backends.base import TokenLogprob
from orchestrator.core.errors import InvalidRequestError
from orchestrator.core.verification import PolicyModel, ScoreRequest
from verifiers.base import BaseVerifier
from verifiers.extraction import extract_answer

WINDOW = 16
TAIL = 32
BOTTOM_SHARE = 0.10
SCALE = 5.0  # confidence of this size maps to a score of 1 - 1/e: C runs from ~1.5 (flat) to ~15 (peaked)
Measure = Literal["mean", "lowest_group", "bottom_10", "tail", "self_certainty", "answer_logprob"]
MEASURES: tuple[Measure, ...] = ("mean", "lowest_group", "bottom_10", "tail", "self_certainty", "answer_logprob")


def top_k(position: TokenLogprob, k: int) -> list[float]:
    """The k largest log-probabilities at a position (the sampled token's is among the candidates)."""
    candidates = sorted({**position.top, position.token: position.logprob}.values(), reverse=True)
    return candidates[:k]


def token_confidence(position: TokenLogprob, k: int) -> float:
    """DeepConf's ``C_i``: minus the mean of the top-k log-probabilities."""
    values = top_k(position, k)
    return -sum(values) / len(values)


def group_confidences(confidences: Sequence[float], window: int = WINDOW) -> list[float]:
    """Means of ``confidences`` over every window of ``window`` consecutive tokens (one window if shorter)."""
    if not confidences:
        return []
    if len(confidences) <= window:
        return [sum(confidences) / len(confidences)]
    running = sum(confidences[:window])
    groups = [running / window]
    for index in range(window, len(confidences)):
        running += confidences[index] - confidences[index - window]
        groups.append(running / window)
    return groups


def token_self_certainty(position: TokenLogprob, k: int, vocab_size: int) -> float:
    """``KL(U ‖ P)`` at one position, with the mass outside the top k spread evenly over the rest."""
    known = top_k(position, k)
    rest = max(vocab_size - len(known), 1)
    rest_mass = max(1.0 - sum(math.exp(value) for value in known), 1e-12)
    sum_log_p = sum(known) + rest * math.log(rest_mass / rest)
    return -math.log(vocab_size) - sum_log_p / vocab_size


def answer_logprob(logprobs: Sequence[TokenLogprob]) -> float | None:
    """Mean log-probability of the tokens spelling the final answer's last occurrence, or None."""
    text = "".join(position.token for position in logprobs)
    answer = extract_answer(text)
    if answer is None or (start := text.rfind(answer)) < 0:
        return None
    end, offset, spanned = start + len(answer), 0, []
    for position in logprobs:
        token_end = offset + len(position.token)
        if token_end > start and offset < end:
            spanned.append(position.logprob)
        offset = token_end
    return sum(spanned) / len(spanned) if spanned else None


def trace_confidence(logprobs: Sequence[TokenLogprob], *, k: int, vocab_size: int) -> dict[str, float]:
    """Every measure of one sampled trace (``answer_logprob`` only when an answer is found)."""
    if not logprobs:
        return {}
    confidences = [token_confidence(position, k) for position in logprobs]
    groups = sorted(group_confidences(confidences))
    bottom = groups[: max(1, math.ceil(len(groups) * BOTTOM_SHARE))]
    tail = confidences[-TAIL:]
    certainty = [token_self_certainty(position, k, vocab_size) for position in logprobs]
    measures = {
        "mean": sum(confidences) / len(confidences),
        "lowest_group": groups[0],
        "bottom_10": sum(bottom) / len(bottom),
        "tail": sum(tail) / len(tail),
        "self_certainty": sum(certainty) / len(certainty),
    }
    if (answer := answer_logprob(logprobs)) is not None:
        measures["answer_logprob"] = answer
    return measures


def as_score(measure: Measure, value: float | None) -> float:
    """A measure as a score in [0, 1], higher = more confident (monotone, so rankings are kept).

    Log-probabilities become probabilities (``exp``); confidences and self-certainty, which grow
    without bound, become ``1 - exp(-value / SCALE)``. A missing answer scores 0.
    """
    if value is None:
        return 0.0
    if measure == "answer_logprob":
        return math.exp(min(value, 0.0))
    return 1.0 - math.exp(-max(value, 0.0) / SCALE)


class ConfidenceVerifier(BaseVerifier):
    """An outcome verifier that scores a sample by one confidence measure of its own tokens.

    Free (no model call), and it needs the sample's top-k logprobs on the ``ScoreRequest``:
    strategies that sample with ``logprobs`` pass them. Every step gets the trace's score.
    """

    spends_budget = False
    measure: Measure = "lowest_group"
    top_k = 5

    async def score(self, batch: Sequence[ScoreRequest], session: PolicyModel) -> list[list[float]]:
        vocab_size = session.renderer.vocab_size
        scores = []
        for request in batch:
            if not request.logprobs:
                raise InvalidRequestError(
                    f"the {self.name!r} verifier reads the sample's token logprobs: use it where samples are "
                    "drawn with logprobs (best_of_n, auto), not on partial search steps"
                )
            value = trace_confidence(request.logprobs, k=self.top_k, vocab_size=vocab_size).get(self.measure)
            scores.append([as_score(self.measure, value)] * max(len(request.steps), 1))
        return scores


def confidence_verifier(name: str, measure: Measure, summary: str) -> type[ConfidenceVerifier]:
    """The verifier class that scores by ``measure``, registered as ``name``.

    Example: ``confidence_verifier("confidence_mean", "mean", "the mean token confidence; free")``.
    """
    attributes = {"name": name, "measure": measure, "summary": summary}
    return type(f"ConfidenceVerifier_{measure}", (ConfidenceVerifier,), attributes)

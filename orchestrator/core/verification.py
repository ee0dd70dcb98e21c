"""The verifier protocol: a batch of (question, steps so far) in, one score per step out.

Every verifier — a process reward model served by vLLM, a calculator over the steps,
the policy model judging itself — answers the same call, so strategies can swap them
by name. Scores are in [0, 1], higher is better. ``aggregate`` folds a candidate's step
scores into one number the way search-and-learn does (``last`` by default).

The implementations live in ``verifiers``; the runtime builds them once and each
request's ``Session`` hands them out by name (``session.verifier("arith_steps")``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from orchestrator.core.backends.base import GenerationResult, Prompt, SamplingSettings, TokenLogprob
from orchestrator.core.errors import InvalidRequestError
from orchestrator.core.rendering import ChatRenderer

Aggregation = Literal["last", "min", "prod"]


@dataclass(frozen=True)
class ScoreRequest:
    """One candidate to score: the question and the solution steps written so far, and (for a
    finished sample drawn with logprobs) its tokens' top-k log-probabilities."""

    question: str
    steps: tuple[str, ...]
    logprobs: tuple[TokenLogprob, ...] | None = None


class PolicyModel(Protocol):
    """What a verifier may use of the request it scores for: the policy model, within the
    request's budget (a ``Session`` is one)."""

    @property
    def renderer(self) -> ChatRenderer: ...

    async def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingSettings, *, n_per_prompt: Sequence[int] | None = None
    ) -> list[GenerationResult]: ...


@runtime_checkable
class Verifier(Protocol):
    """Scores every step of every candidate in a batch."""

    name: str
    spends_budget: bool
    """False for a verifier that costs nothing (no model, no service): it may still score
    once the request's budget is spent."""

    async def score(self, batch: Sequence[ScoreRequest], session: PolicyModel) -> list[list[float]]:
        """Per request, one score in [0, 1] per step (same length as ``steps``).

        ``session`` is the request's session: a verifier that calls the policy model does
        so through it, so its tokens are charged to the request's budget.
        """
        ...

    async def aclose(self) -> None:
        """Release what the verifier holds (HTTP clients); called once, by the runtime."""
        ...


class TextEmbedder(Protocol):
    """Sentence embeddings, built once by the runtime (``verifiers.semantic.SentenceEmbedder``):
    ETS's semantic coverage and voting by meaning reach it through the session."""

    async def embed(self, texts: Sequence[str]) -> Any:
        """An (n, d) array of unit-length rows, one per text, computed off the event loop."""
        ...


class VerifierSource(Protocol):
    """Hands out the runtime's verifiers by name."""

    def get(self, name: str) -> Verifier:
        """The verifier called ``name``; an error that says what to configure if it is unavailable."""
        ...


def aggregate(step_scores: Sequence[float], how: Aggregation = "last") -> float:
    """One score for a candidate from its step scores.

    Example: ``aggregate([0.9, 0.5, 0.8], "min") == 0.5``; an empty list scores 0.
    """
    if not step_scores:
        return 0.0
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "prod":
        return float(math.prod(step_scores))
    raise InvalidRequestError(f"unknown aggregation {how!r}; use last, min or prod")

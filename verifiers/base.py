"""The verifier protocol: a batch of (question, steps so far) in, one score per step out.

Every verifier — a process reward model served by vLLM, a calculator over the steps,
the policy model judging itself — answers the same call, so strategies can swap them
by name. Scores are in [0, 1], higher is better. ``aggregate`` folds a candidate's step
scores into one number the way search-and-learn does (``last`` by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, Protocol, runtime_checkable

from pydantic import AfterValidator

from orchestrator.errors import InvalidRequestError

if TYPE_CHECKING:
    from orchestrator.context import ReasoningContext

Aggregation = Literal["last", "min", "prod"]


@dataclass(frozen=True)
class ScoreRequest:
    """One candidate to score: the question and the solution steps written so far."""

    question: str
    steps: tuple[str, ...]


@runtime_checkable
class Verifier(Protocol):
    """Scores every step of every candidate in a batch."""

    name: str
    # Optional ``spends_budget = False`` marks a verifier that costs nothing (no model, no
    # service): it may still score once the request's budget is spent.

    async def score(self, batch: Sequence[ScoreRequest], ctx: ReasoningContext) -> list[list[float]]:
        """Per request, one score in [0, 1] per step (same length as ``steps``).

        ``ctx`` is the request's context: a verifier that calls a model does so through it,
        so its tokens are charged to the request's budget.
        """
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


VerifierFactory = Callable[[], Verifier]
VERIFIERS: dict[str, VerifierFactory] = {}


def register_verifier(name: str) -> Callable[[VerifierFactory], VerifierFactory]:
    """Decorator adding a verifier factory to the registry under ``name``."""

    def add(factory: VerifierFactory) -> VerifierFactory:
        VERIFIERS[name] = factory
        return factory

    return add


def known_verifier(name: str) -> str:
    """Validate a verifier name in a params model (raises ``ValueError`` listing the known ones)."""
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; choose one of {sorted(VERIFIERS)}")
    return name


VerifierName = Annotated[str, AfterValidator(known_verifier)]
"""A params field naming a registered verifier; unknown names fail validation with the list."""


def get_verifier(name: str) -> Verifier:
    """A verifier by name, or an error listing the known ones."""
    try:
        factory = VERIFIERS[name]
    except KeyError:
        raise InvalidRequestError(f"unknown verifier {name!r}; choose one of {sorted(VERIFIERS)}") from None
    return factory()

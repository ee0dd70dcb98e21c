"""What every verifier implementation shares: defaults for the kernel's ``Verifier`` protocol.

A verifier subclasses ``BaseVerifier``, sets ``name``, ``summary`` and ``spends_budget``, implements
``score`` and, if it holds anything to release or needs settings, ``aclose`` and
``from_settings``. ``verifiers.registry`` names every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from orchestrator.core.settings import Settings
from orchestrator.core.verification import PolicyModel, ScoreRequest
from verifiers.semantic import SentenceEmbedder

if TYPE_CHECKING:
    from verifiers.reward import ServedRewardModel


@dataclass(frozen=True)
class SharedModels:
    """What the runtime builds once and verifiers borrow: the sentence embedder and, when one is
    served, the trained reward model (``TTC_REWARD__MODEL``)."""

    embedder: SentenceEmbedder = field(default_factory=SentenceEmbedder)
    reward: ServedRewardModel | None = None


class BaseVerifier:
    """A verifier with no settings and nothing to release; subclasses implement ``score``."""

    name: str = ""
    summary: str = ""  # one line for GET /v1/verifiers: what it reads and what it costs
    spends_budget: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, shared: SharedModels) -> Self:
        """Build the verifier the settings describe, borrowing what it needs of ``shared`` (raise
        ``ConfigurationError`` naming what is missing)."""
        return cls()

    async def score(self, batch: Sequence[ScoreRequest], session: PolicyModel) -> list[list[float]]:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Nothing to release by default."""

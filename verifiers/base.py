"""What every verifier implementation shares: defaults for the kernel's ``Verifier`` protocol.

A verifier subclasses ``BaseVerifier``, sets ``name``, ``summary`` and ``spends_budget``, implements
``score`` and, if it holds anything to release or needs settings, ``aclose`` and
``from_settings``. ``verifiers.registry`` names every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from orchestrator.core.settings import Settings
from orchestrator.core.verification import PolicyModel, ScoreRequest


class BaseVerifier:
    """A verifier with no settings and nothing to release; subclasses implement ``score``."""

    name: str = ""
    summary: str = ""  # one line for GET /v1/verifiers: what it reads and what it costs
    spends_budget: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build the verifier the settings describe (raise ``ConfigurationError`` naming what is missing)."""
        return cls()

    async def score(self, batch: Sequence[ScoreRequest], session: PolicyModel) -> list[list[float]]:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Nothing to release by default."""

"""Every verifier by name, and the set of them one runtime builds once and closes once.

Adding a verifier is one class (a ``BaseVerifier``) and one row in ``VERIFIERS``.
Strategies name verifiers in their params (``VerifierName`` validates the name) and get
them from their session; nothing builds a verifier per request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from pydantic import AfterValidator

from orchestrator.core.errors import ConfigurationError, InvalidRequestError
from orchestrator.core.settings import Settings
from orchestrator.core.verification import Verifier
from verifiers.arith_steps import ArithmeticSampleVerifier, ArithmeticStepVerifier
from verifiers.base import BaseVerifier, SharedModels
from verifiers.confidence import ConfidenceVerifier, Measure, confidence_verifier
from verifiers.learned import LearnedVerifier
from verifiers.prm import OutcomeRewardModel, ProcessRewardModel
from verifiers.reward import ServedRewardModel
from verifiers.self_judge import SelfJudgeVerifier
from verifiers.semantic import SentenceEmbedder

log = logging.getLogger(__name__)

# The sample's own token distribution: free, and needs samples drawn with logprobs.
_MEASURES: tuple[tuple[str, Measure, str], ...] = (
    ("confidence", "lowest_group", "DeepConf's lowest group confidence of the sample's tokens"),
    ("confidence_mean", "mean", "the mean confidence of the sample's tokens"),
    ("confidence_bottom_10", "bottom_10", "the mean of the sample's 10% least confident token groups"),
    ("confidence_tail", "tail", "the confidence of the sample's last tokens"),
    ("self_certainty", "self_certainty", "self-certainty: the token distributions' distance from uniform"),
    ("answer_logprob", "answer_logprob", "the probability of the tokens that write the answer"),
)

VERIFIERS: dict[str, type[BaseVerifier]] = {
    cls.name: cls
    for cls in (
        ArithmeticStepVerifier,
        ArithmeticSampleVerifier,
        SelfJudgeVerifier,
        ProcessRewardModel,
        OutcomeRewardModel,
        LearnedVerifier,
        *(confidence_verifier(name, measure, f"{what} (needs logprobs); free") for name, measure, what in _MEASURES),
    )
}


CONFIDENCE_VERIFIERS = frozenset(name for name, cls in VERIFIERS.items() if issubclass(cls, ConfidenceVerifier))


def known_verifier(name: str) -> str:
    """Validate a verifier name in a params model (raises ``ValueError`` listing the known ones)."""
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; choose one of {sorted(VERIFIERS)}")
    return name


VerifierName = Annotated[str, AfterValidator(known_verifier)]
"""A params field naming a registered verifier; unknown names fail validation with the list."""


@dataclass(frozen=True)
class VerifierStatus:
    """One line of ``VerifierSet.describe``."""

    name: str
    summary: str
    available: bool | None  # None: not known here (the command line asks a service)
    unavailable_reason: str | None
    reward_model: dict[str, Any] | None


class VerifierSet:
    """The verifiers of one process: each built once from the settings, all closed together.

    A verifier whose settings are missing (``prm`` without ``TTC_PRM__URL``) is not built;
    asking for it raises the configuration error that says what to set.

    Example::

        verifiers = VerifierSet.build(Settings())
        calculator = verifiers.get("arith_steps")
        await verifiers.aclose()
    """

    def __init__(
        self, built: dict[str, Verifier], unavailable: dict[str, ConfigurationError], shared: SharedModels
    ) -> None:
        self._built = built
        self._unavailable = unavailable
        self.shared = shared

    @classmethod
    def build(cls, settings: Settings, reward: ServedRewardModel | None = None) -> VerifierSet:
        """Build every registered verifier the settings allow (no network calls yet), and the
        sentence embedder they and the strategies share; the reward model verifiers score through
        ``reward`` when the runtime serves one."""
        shared = SharedModels(reward=reward)
        built: dict[str, Verifier] = {}
        unavailable: dict[str, ConfigurationError] = {}
        for name, verifier in VERIFIERS.items():
            try:
                built[name] = verifier.from_settings(settings, shared)
            except ConfigurationError as error:
                unavailable[name] = error
        return cls(built, unavailable, shared)

    @property
    def embedder(self) -> SentenceEmbedder:
        """The process's sentence embedder: sessions hand it to strategies."""
        return self.shared.embedder

    def describe(self) -> list[VerifierStatus]:
        """Every registered verifier: what it reads, whether this process can use it (and if not,
        what to set), and for the reward-model verifiers the served model's card.

        Example: ``[v.name for v in verifiers.describe() if v.available]``.
        """
        reward_card = self.shared.reward.card() if self.shared.reward is not None else None
        return [
            VerifierStatus(
                name=name,
                summary=verifier.summary,
                available=name in self._built,
                unavailable_reason=str(self._unavailable[name]) if name in self._unavailable else None,
                reward_model=reward_card if issubclass(verifier, ProcessRewardModel) else None,
            )
            for name, verifier in VERIFIERS.items()
        ]

    def get(self, name: str) -> Verifier:
        if name in self._built:
            return self._built[name]
        if name in self._unavailable:
            raise self._unavailable[name]
        raise InvalidRequestError(f"unknown verifier {name!r}; choose one of {sorted(VERIFIERS)}")

    async def aclose(self) -> None:
        """Close every verifier (their HTTP clients) and the embedder; a failure to close one does
        not stop the others. (The reward model's engine is the runtime's to close.)"""
        with anyio.CancelScope(shield=True):
            for name, verifier in self._built.items():
                try:
                    await verifier.aclose()
                except Exception:  # closing is best effort: log and go on with the rest
                    log.warning("closing verifier %s failed", name, exc_info=True)
            await self.shared.embedder.aclose()

"""Every verifier by name, and the set of them one runtime builds once and closes once.

Adding a verifier is one class (a ``BaseVerifier``) and one row in ``VERIFIERS``.
Strategies name verifiers in their params (``VerifierName`` validates the name) and get
them from their session; nothing builds a verifier per request.
"""

from __future__ import annotations

import logging
from typing import Annotated

import anyio
from pydantic import AfterValidator

from orchestrator.core.errors import ConfigurationError, InvalidRequestError
from orchestrator.core.settings import Settings
from orchestrator.core.verification import Verifier
from verifiers.arith_steps import ArithmeticSampleVerifier, ArithmeticStepVerifier
from verifiers.base import BaseVerifier
from verifiers.confidence import ConfidenceVerifier, confidence_verifier
from verifiers.learned import LearnedVerifier
from verifiers.prm import OutcomeRewardModel, ProcessRewardModel
from verifiers.reward import ServedRewardModel
from verifiers.self_judge import SelfJudgeVerifier

log = logging.getLogger(__name__)

VERIFIERS: dict[str, type[BaseVerifier]] = {
    "arith_steps": ArithmeticStepVerifier,  # a calculator over each step's equations; free
    "arith_checked": ArithmeticSampleVerifier,  # the calculator's verdict on a whole sample; free
    "self_judge": SelfJudgeVerifier,  # the policy model's own P(Yes) per step; one token per step
    "prm": ProcessRewardModel,  # a process reward model: TTC_REWARD__MODEL in process, or TTC_PRM__URL
    "orm": OutcomeRewardModel,  # the same model scoring the whole solution at once
    "learned": LearnedVerifier,  # trained from ttc's own labelled dev samples (TTC_LEARNED_VERIFIER)
    # The sample's own token distribution (free; needs samples drawn with logprobs):
    "confidence": confidence_verifier("confidence", "lowest_group"),  # DeepConf's lowest group confidence
    "confidence_mean": confidence_verifier("confidence_mean", "mean"),
    "confidence_bottom_10": confidence_verifier("confidence_bottom_10", "bottom_10"),
    "confidence_tail": confidence_verifier("confidence_tail", "tail"),
    "self_certainty": confidence_verifier("self_certainty", "self_certainty"),
    "answer_logprob": confidence_verifier("answer_logprob", "answer_logprob"),
}


CONFIDENCE_VERIFIERS = frozenset(name for name, cls in VERIFIERS.items() if issubclass(cls, ConfidenceVerifier))


def known_verifier(name: str) -> str:
    """Validate a verifier name in a params model (raises ``ValueError`` listing the known ones)."""
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; choose one of {sorted(VERIFIERS)}")
    return name


VerifierName = Annotated[str, AfterValidator(known_verifier)]
"""A params field naming a registered verifier; unknown names fail validation with the list."""


class VerifierSet:
    """The verifiers of one process: each built once from the settings, all closed together.

    A verifier whose settings are missing (``prm`` without ``TTC_PRM__URL``) is not built;
    asking for it raises the configuration error that says what to set.

    Example::

        verifiers = VerifierSet.build(Settings())
        calculator = verifiers.get("arith_steps")
        await verifiers.aclose()
    """

    def __init__(self, built: dict[str, Verifier], unavailable: dict[str, ConfigurationError]) -> None:
        self._built = built
        self._unavailable = unavailable

    @classmethod
    def build(cls, settings: Settings, reward: ServedRewardModel | None = None) -> VerifierSet:
        """Build every registered verifier the settings allow (no network calls yet); the reward
        model verifiers score through ``reward`` when the runtime serves one."""
        built: dict[str, Verifier] = {}
        unavailable: dict[str, ConfigurationError] = {}
        for name, verifier in VERIFIERS.items():
            try:
                if issubclass(verifier, ProcessRewardModel):
                    built[name] = verifier.from_settings(settings, reward)
                else:
                    built[name] = verifier.from_settings(settings)
            except ConfigurationError as error:
                unavailable[name] = error
        return cls(built, unavailable)

    def get(self, name: str) -> Verifier:
        if name in self._built:
            return self._built[name]
        if name in self._unavailable:
            raise self._unavailable[name]
        raise InvalidRequestError(f"unknown verifier {name!r}; choose one of {sorted(VERIFIERS)}")

    async def aclose(self) -> None:
        """Close every verifier (their HTTP clients); a failure to close one does not stop the others."""
        with anyio.CancelScope(shield=True):
            for name, verifier in self._built.items():
                try:
                    await verifier.aclose()
                except Exception:  # closing is best effort: log and go on with the rest
                    log.warning("closing verifier %s failed", name, exc_info=True)

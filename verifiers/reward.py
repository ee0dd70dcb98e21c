"""Reward models ttc trains (``ttc train-reward-model``): what their artifact is and how it is checked.

An artifact is a Hugging Face ``*ForSequenceClassification`` checkpoint with a two-way head
(``[bad, good]``) and ``ttc-reward.json`` beside it: the format, the kind (``orm`` or ``prm``),
the step tag the head reads, the base model, the policy model whose samples it judged, the
content hashes of the items it saw, and its validation AUROC. vLLM's pooling runner serves it
(``token_classify`` with the ``STEP`` pooler at the tag's id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.core.errors import ConfigurationError
from orchestrator.core.settings import Settings

FORMAT = "ttc-reward-model/1"
ARTIFACT_FILE = "ttc-reward.json"
# Special tokens the base models hold as one token and solutions never write: the step tag.
STEP_TAGS = ("<empty_output>", "<|fim_pad|>", "<extra_0>")


def load_reward_meta(directory: Path, policy_model: str | None = None) -> dict[str, Any]:
    """The artifact's metadata, checked: its format, and (when given) that it judges ``policy_model``.

    Example: ``load_reward_meta(Path("runs/orm-q05"), "qwen2.5-coder-0.5b")["step_tag"]``.
    """
    path = Path(directory) / ARTIFACT_FILE
    if not path.is_file():
        raise ConfigurationError(
            f"{directory} is not a ttc reward model: {ARTIFACT_FILE} is missing (ttc train-reward-model writes it)"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"{path} is unreadable: {error}") from None
    if meta.get("format") != FORMAT:
        raise ConfigurationError(f"{path} has format {meta.get('format')!r}; this ttc reads {FORMAT!r}: retrain it")
    judged = meta.get("judged_model")
    if policy_model and judged and judged != policy_model:
        raise ConfigurationError(
            f"the reward model in {directory} was trained on {judged}'s samples, and the served model is "
            f"{policy_model}: train one on this model's samples"
        )
    return meta


class TagScorer(Protocol):
    """What serves a reward model: ``[p_bad, p_good]`` at each step tag of a text
    (``orchestrator.core.backends.pooling.InProcessPooler`` in process)."""

    async def tag_rows(self, text: str) -> list[list[float]]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class ServedRewardModel:
    """A trained reward model the runtime serves: its engine and its checked metadata."""

    scorer: TagScorer
    meta: dict[str, Any]
    directory: Path

    @property
    def step_tag(self) -> str:
        return str(self.meta["step_tag"])

    def card(self) -> dict[str, Any]:
        """What a user may know of the served model: its kind, base, the model it judges, when it
        was trained, on how many items, and its held-out AUROC (not the item hashes or paths).

        Example: ``served.card()["validation"]["within_item_auroc"]``.
        """
        meta = self.meta
        return {
            "kind": meta.get("kind"),
            "base_model": meta.get("base_model"),
            "judged_model": meta.get("judged_model"),
            "trained_at": meta.get("trained_at"),
            "items": len(meta.get("item_hashes", ())),
            "validation": meta.get("validation"),
        }


async def open_reward_model(settings: Settings, policy_model: str) -> ServedRewardModel | None:
    """Start the in-process engine for ``TTC_REWARD__MODEL`` (None when unset), after checking the
    artifact judges ``policy_model``: a missing or foreign artifact is a configuration error at start."""
    from orchestrator.core.backends.pooling import InProcessPooler

    directory = settings.reward.model
    if directory is None:
        return None
    if settings.prm.url:
        raise ConfigurationError(
            "both TTC_REWARD__MODEL (an in-process reward model) and TTC_PRM__URL (a pooling server) are set: "
            "the prm and orm verifiers use one of them; unset the other"
        )
    meta = load_reward_meta(directory, policy_model)
    pooler = await InProcessPooler.start(directory, int(meta["step_tag_id"]), settings.engine.dtype)
    return ServedRewardModel(pooler, meta, directory)

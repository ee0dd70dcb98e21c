"""``learned``: an outcome verifier ttc trains from its own labelled samples (``ttc train-verifier``).

Every sample a dev sweep drew is labelled by the item's gold answer, so correctness labels come
free. A scikit-learn classifier over what is cheap to know about a sample predicts whether it is
correct; its probability is the score. The features:

- the MiniLM embedding (384 numbers) of the question and the solution together;
- the confidence measures of the sample's tokens (``verifiers.confidence``);
- the calculator's verdict on its steps (``arith_steps``);
- its length, and whether it was cut off.

The artifact is one file (joblib): the fitted model and its metadata (format version, the sweep
and items it was trained on, the date, the validation AUROC). The runtime loads it once from
``TTC_LEARNED_VERIFIER``; a missing or incompatible file is a configuration error that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import anyio
import numpy as np

from orchestrator.core.errors import ConfigurationError, InvalidRequestError
from orchestrator.core.settings import Settings
from orchestrator.core.verification import PolicyModel, ScoreRequest
from verifiers.arith_steps import ArithmeticStepVerifier
from verifiers.base import BaseVerifier, SharedModels
from verifiers.confidence import MEASURES, trace_confidence
from verifiers.semantic import DIMENSIONS, SentenceEmbedder

FORMAT = "ttc-learned-verifier/2"  # 2: trained items recorded by content hash
TOP_K = 5
MISSING = -10.0  # a measure a sample lacks (no answer span, no logprobs): below any real value


@dataclass(frozen=True)
class SampleFacts:
    """What the features are made of, for one sample."""

    question: str
    text: str
    confidence: dict[str, float]
    calculator: float | None
    tokens: int
    cut_off: bool


def embedding_texts(facts: Sequence[SampleFacts]) -> list[str]:
    """What is embedded for each sample: its question and its text."""
    return [f"{fact.question}\n\n{fact.text}" for fact in facts]


def feature_rows(facts: Sequence[SampleFacts], embeddings: np.ndarray) -> np.ndarray:
    """The feature matrix, one row per sample: its embedding (``embedding_texts``, embedded) and
    the cheap features.

    Example (offline): ``feature_rows(facts, embedder.embed_sync(embedding_texts(facts)))``.
    """
    if not facts:
        return np.zeros((0, DIMENSIONS + len(MEASURES) + 3), dtype=np.float32)
    cheap = np.array([_cheap_features(fact) for fact in facts], dtype=np.float32)
    return np.hstack([np.asarray(embeddings, dtype=np.float32), cheap])


def _cheap_features(fact: SampleFacts) -> list[float]:
    measures = [fact.confidence.get(measure, MISSING) for measure in MEASURES]
    calculator = fact.calculator if fact.calculator is not None else 0.5
    return [*measures, calculator, min(fact.tokens, 1024) / 256, float(fact.cut_off)]


def load_artifact(path: Path) -> dict[str, Any]:
    """The artifact at ``path`` (model and metadata), or a ``ConfigurationError`` saying what is wrong."""
    import joblib

    if not path.is_file():
        raise ConfigurationError(
            f"TTC_LEARNED_VERIFIER points at {path}, which is not a file: run `ttc train-verifier`"
        )
    try:
        artifact = joblib.load(path)
    except Exception as error:  # joblib and pickle raise many kinds for a foreign file
        raise ConfigurationError(f"{path} is not a learned-verifier file ({type(error).__name__}: {error})") from None
    if not isinstance(artifact, dict) or artifact.get("meta", {}).get("format") != FORMAT:
        raise ConfigurationError(f"{path} was written by another version of `ttc train-verifier`: train it again")
    return artifact


class LearnedVerifier(BaseVerifier):
    """Scores a finished sample by the trained classifier's probability that it is correct."""

    name = "learned"
    summary = "a classifier trained on ttc's own labelled dev samples (TTC_LEARNED_VERIFIER); free"
    spends_budget = False  # no model tokens: an embedding and a classifier on the CPU

    def __init__(self, artifact: dict[str, Any], embedder: SentenceEmbedder) -> None:
        self.model = artifact["model"]
        self.meta = artifact["meta"]
        self.embedder = embedder  # borrowed: the runtime built it and closes it
        self._calculator = ArithmeticStepVerifier()

    @classmethod
    def from_settings(cls, settings: Settings, shared: SharedModels) -> Self:
        if settings.learned_verifier is None:
            raise ConfigurationError(
                "the learned verifier needs TTC_LEARNED_VERIFIER: the file `ttc train-verifier` writes"
            )
        return cls(load_artifact(settings.learned_verifier), shared.embedder)

    @property
    def trained_items(self) -> frozenset[str]:
        """Content hashes of the items it was trained on (``harness.datasets.content_hash``)."""
        return frozenset(self.meta["item_hashes"])

    async def score(self, batch: Sequence[ScoreRequest], session: PolicyModel) -> list[list[float]]:
        if any(not request.logprobs for request in batch):
            raise InvalidRequestError(
                "the learned verifier reads the sample's token logprobs: use it on samples drawn with logprobs"
            )
        calculator = await self._calculator.score(batch, session)
        vocab = session.renderer.vocab_size
        facts = [
            SampleFacts(
                question=request.question,
                text="\n\n".join(request.steps),
                confidence=trace_confidence(request.logprobs or (), k=TOP_K, vocab_size=vocab),
                calculator=steps[-1] if steps else None,
                tokens=len(request.logprobs or ()),
                cut_off=False,
            )
            for request, steps in zip(batch, calculator, strict=True)
        ]
        rows = feature_rows(facts, await self.embedder.embed(embedding_texts(facts)))
        probabilities = await anyio.to_thread.run_sync(self.model.predict_proba, rows)
        return [[float(p)] * max(len(r.steps), 1) for p, r in zip(probabilities[:, 1], batch, strict=True)]

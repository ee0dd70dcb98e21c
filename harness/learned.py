"""Training the ``learned`` verifier from ttc's own labelled dev samples.

Samples come from a stored dev sweep (its best-of-N passes) or from signal-sample files
(``benchmarks/signal_samples.py``); each is labelled by its item's gold answer. Two classifiers
are validated on held-out items (5-fold, grouped by item, so no item is in both sides of a fold):
logistic regression over standardised features, and gradient-boosted trees. The one with the
higher mean validation AUROC is refitted on every sample and saved with its metadata.

Only dev items are ever used: a sweep over the test split is refused, and the artifact records
the content hash of every item it saw (``Problem.content_hash``), so the harness can refuse to
evaluate it on one of them, or on the same question under another id.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.catalog import load_dataset
from harness.datasets import Problem
from harness.grading import is_correct
from harness.passes import SamplePass
from harness.reward_data import read_signal_items, signal_item_hash
from orchestrator.core.errors import InvalidRequestError
from verifiers.learned import FORMAT, SampleFacts, embedding_texts, feature_rows
from verifiers.semantic import SentenceEmbedder

FOLDS = 5


@dataclass(frozen=True)
class Labelled:
    """One sample, what it is made of, and whether it was right."""

    item_id: str
    item_hash: str
    facts: SampleFacts
    correct: bool


def from_signal_samples(paths: list[Path]) -> list[Labelled]:
    """Samples from ``benchmarks/signal_samples.py`` files (dev files only)."""
    rows: list[Labelled] = []
    for item in read_signal_items(paths):
        item_hash = signal_item_hash(item)
        for sample in item["samples"]:
            facts = signal_sample_facts(item["question"], sample)
            rows.append(Labelled(item["id"], item_hash, facts, bool(sample["correct"])))
    return rows


def signal_sample_facts(question: str, sample: dict[str, Any]) -> SampleFacts:
    """The feature facts of one sample as ``benchmarks/signal_samples.py`` stores it."""
    return SampleFacts(
        question=question,
        text=sample["text"],
        confidence=sample["confidence"],
        calculator=sample["calculator"],
        tokens=sample["tokens"],
        cut_off=sample["finish"] != "stop",
    )


def from_sweep_passes(spec: dict[str, Any], passes: dict[str, str]) -> list[Labelled]:
    """Samples of a stored sweep's best-of-N passes (``Keys.sweep_passes``), labelled by gold answers."""
    if spec["split"] != "dev":
        raise InvalidRequestError(f"sweep {spec['name']!r} is over the {spec['split']} split: train on a dev sweep")
    problems = {p.id: p for p in load_dataset(spec["dataset"], "dev", spec["limit"], spec.get("data_seed", 0))}
    rows: list[Labelled] = []
    for key, raw in passes.items():
        problem = problems.get(key.split("|", 1)[0])
        if problem is None:
            continue
        for sample in SamplePass.model_validate_json(raw).samples:
            facts = SampleFacts(
                question=problem.question,
                text=sample.text,
                confidence=sample.confidence or {},
                calculator=sample.score,
                tokens=sample.tokens or 0,
                cut_off=sample.cut_off,
            )
            right = is_correct(problem, sample.answer, sample.text)
            rows.append(Labelled(problem.id, problem.content_hash, facts, right))
    return rows


def train(rows: list[Labelled], source: str, judged_model: str = "") -> dict[str, Any]:
    """Validate both classifiers on held-out items, refit the better one on everything: the artifact.
    ``judged_model`` is the catalogue name of the model whose samples these are (recorded)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.array([row.correct for row in rows])
    if labels.all() or not labels.any():
        raise InvalidRequestError("the samples are all right or all wrong: nothing to learn from them")
    facts = [row.facts for row in rows]
    features = feature_rows(facts, SentenceEmbedder().embed_sync(embedding_texts(facts)))  # one use: build it here
    groups = [row.item_id for row in rows]
    candidates = {
        "logistic_regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)),
        "gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05),
    }
    validation: dict[str, float] = {}
    for name, build in candidates.items():
        scores = []
        for train_index, held_out in GroupKFold(n_splits=FOLDS).split(features, labels, groups):
            if labels[held_out].all() or not labels[held_out].any():
                continue  # a fold whose items are all right (or all wrong) has no AUROC
            model = build().fit(features[train_index], labels[train_index])
            scores.append(roc_auc_score(labels[held_out], model.predict_proba(features[held_out])[:, 1]))
        validation[name] = float(np.mean(scores)) if scores else 0.5
    chosen = max(validation, key=validation.__getitem__)
    meta = {
        "format": FORMAT,
        "source": source,
        "judged_model": judged_model,
        "model": chosen,
        "validation_auroc": validation,
        "samples": len(rows),
        "correct_share": float(labels.mean()),
        "items": sorted(set(groups)),
        "item_hashes": sorted({row.item_hash for row in rows}),
        "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return {"model": candidates[chosen]().fit(features, labels), "meta": meta}


def save(artifact: dict[str, Any], path: Path) -> Path:
    """Write the artifact (joblib) and its metadata beside it (``.json``, for people)."""
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(artifact, path)
    path.with_suffix(".json").write_text(json.dumps(artifact["meta"], indent=2) + "\n")
    return path


def refuse_trained_items(problems: list[Problem], trained_hashes: frozenset[str], where: str) -> None:
    """A learned verifier is never evaluated on an item it was trained on, under any id.

    Example: ``refuse_trained_items(test_items, frozenset(meta["item_hashes"]), "sweep x")``.
    """
    overlap = [p.id for p in problems if p.content_hash in trained_hashes]
    if overlap:
        raise InvalidRequestError(
            f"{where}: the learned verifier was trained on {len(overlap)} of these items (e.g. {overlap[0]}, "
            "matched by content); evaluate it on the test split"
        )

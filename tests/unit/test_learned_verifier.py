"""The learned verifier: trained on labelled dev samples, validated on held-out items, saved with
what it saw, loaded once by name, and never evaluated on an item it was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pytest

from harness.datasets import Problem
from harness.learned import from_signal_samples, refuse_trained_items, save, train
from orchestrator.core.backends.base import TokenLogprob
from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.errors import ConfigurationError, InvalidRequestError
from orchestrator.core.settings import Settings
from orchestrator.core.verification import ScoreRequest
from tests.sessions import new_session
from verifiers.registry import VerifierSet


def signal_file(tmp_path: Path, split: str = "dev", items: int = 30) -> Path:
    """Items whose right samples are confident and check out, and whose wrong ones are neither."""
    lines = []
    for index in range(items):
        a, b = index + 2, 3 * index + 1
        samples = []
        for correct in (True, False, True, False):
            answer = a + b if correct else a + b + 1
            samples.append(
                {
                    "text": f"{a} + {b} = {answer}. The answer is {answer}.",
                    "correct": correct,
                    "tokens": 20,
                    "finish": "stop",
                    "calculator": 1.0 if correct else 0.0,
                    "confidence": {"mean": 6.0 if correct else 2.0, "lowest_group": 5.0 if correct else 1.5},
                }
            )
        lines.append(json.dumps({"id": f"item-{index}", "question": f"What is {a} + {b}?", "samples": samples}))
    path = tmp_path / f"arithmetic-{split}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def tokens(text: str, chosen: float, alternative: float) -> tuple[TokenLogprob, ...]:
    return tuple(TokenLogprob(token=ch, logprob=chosen, top={ch: chosen, "x": alternative}) for ch in text)


async def test_trained_validated_saved_and_served_by_name(tmp_path: Path) -> None:
    artifact = train(from_signal_samples([signal_file(tmp_path)]), "test data", "smollm2-135m")
    meta = artifact["meta"]
    assert meta["judged_model"] == "smollm2-135m"
    assert max(meta["validation_auroc"].values()) > 0.9 and meta["model"] in meta["validation_auroc"]
    assert len(meta["items"]) == len(meta["item_hashes"]) == 30 and meta["samples"] == 120
    path = save(artifact, tmp_path / "learned.joblib")
    assert json.loads(path.with_suffix(".json").read_text())["items"] == meta["items"]

    verifiers = VerifierSet.build(Settings(learned_verifier=path))
    learned = verifiers.get("learned")
    right, wrong = "9 + 4 = 13. The answer is 13.", "9 + 4 = 14. The answer is 14."
    batch = [  # like the training data: the right one confident, the wrong one unsure
        ScoreRequest("What is 9 + 4?", (right,), tokens(right, -0.05, -11.0)),
        ScoreRequest("What is 9 + 4?", (wrong,), tokens(wrong, -0.7, -0.7)),
    ]
    [[right_score], [wrong_score]] = await learned.score(batch, new_session(ScriptedBackend(lambda p, s: [])))
    assert 0.0 <= wrong_score < 0.5 < right_score <= 1.0


def test_it_never_trains_or_evaluates_on_test_items(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="dev-split"):
        from_signal_samples([signal_file(tmp_path, split="test")])
    trained = Problem("What is 4 + 5?", "9", id="dev-3")
    again = Problem("what is 4 +  5?", "9", id="test-17")  # the same question under another id
    other = Problem("What is 4 + 6?", "10", id="test-18")
    with pytest.raises(InvalidRequestError, match=r"trained on 1 of these items .e.g. test-17"):
        refuse_trained_items([again, other], frozenset({trained.content_hash}), "sweep x")
    refuse_trained_items([other], frozenset({trained.content_hash}), "sweep x")


def test_a_missing_or_foreign_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="TTC_LEARNED_VERIFIER"):
        VerifierSet.build(Settings()).get("learned")
    with pytest.raises(ConfigurationError, match="not a file"):
        VerifierSet.build(Settings(learned_verifier=tmp_path / "nope.joblib")).get("learned")
    foreign = tmp_path / "foreign.joblib"
    joblib.dump({"model": None, "meta": {"format": "something-else"}}, foreign)
    with pytest.raises(ConfigurationError, match="another version"):
        VerifierSet.build(Settings(learned_verifier=foreign)).get("learned")

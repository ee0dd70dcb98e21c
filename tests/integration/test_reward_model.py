"""A reward model trained end to end on a handful of samples, then served both ways.

The test model (SmolLM2-135M) is fine-tuned as an outcome reward model on twelve solutions
(six right, six wrong); its loss must fall, and served by vLLM's pooling runner — in process
(``TTC_REWARD__MODEL``) and as a ``vllm serve --runner pooling`` server (``TTC_PRM__URL``) — the
``orm`` verifier must score every right solution it saw above every wrong one, with the same
scores both ways. Both run in float32 here: in bfloat16 the two engines batch the same rows
differently and a score near the middle moved by 0.05 between them on one machine, which hid
whether the server path scores the same tokens at the same tag.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.datasets import content_hash
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.errors import ConfigurationError
from orchestrator.core.session import Session
from orchestrator.core.settings import EngineOptions, PrmOptions, RewardOptions, Settings
from orchestrator.core.verification import ScoreRequest
from tests.reward_server import EXACT, labelled_solutions
from verifiers.registry import VerifierSet
from verifiers.reward import ARTIFACT_FILE, load_reward_meta, open_reward_model

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def test_the_artifact_records_what_it_judges_and_saw(reward_dir: Path) -> None:
    meta = load_reward_meta(reward_dir, "smollm2-135m")
    assert meta["kind"] == "orm" and meta["step_tag"] == "<empty_output>"
    assert set(meta["item_hashes"]) == {content_hash(q) for q, _, _ in labelled_solutions()}
    with pytest.raises(ConfigurationError, match="trained on smollm2-135m's samples"):
        load_reward_meta(reward_dir, "qwen2.5-coder-0.5b")


def scoring_session() -> Session:
    return Session(backend=None, meter=BudgetMeter(Budget()))  # type: ignore[arg-type]


def batch() -> list[ScoreRequest]:
    return [ScoreRequest(q, tuple(text.split("\n\n"))) for q, text, _ in labelled_solutions()]


def assert_right_above_wrong(scores: list[list[float]]) -> None:
    labels = [label for _, _, label in labelled_solutions()]
    right = [row[0] for row, label in zip(scores, labels, strict=True) if label]
    wrong = [row[0] for row, label in zip(scores, labels, strict=True) if not label]
    assert all(len(row) == 2 and row[0] == row[1] for row in scores)  # one score per step, the same
    assert min(right) > max(wrong), f"right {right} vs wrong {wrong}"


@pytest.fixture(scope="module")
async def inprocess_scores(reward_dir: Path) -> AsyncIterator[list[list[float]]]:
    settings = Settings(reward=RewardOptions(model=reward_dir), prm=PrmOptions(), engine=EngineOptions(dtype=EXACT))
    reward = await open_reward_model(settings, "smollm2-135m")
    assert reward is not None
    verifiers = VerifierSet.build(settings, reward)
    try:
        listed = {status.name: status for status in verifiers.describe()}
        assert listed["orm"].available and listed["prm"].available
        card = listed["orm"].reward_model
        assert card is not None and (card["kind"], card["judged_model"]) == ("orm", "smollm2-135m")
        assert card["items"] == 6
        assert card["validation"]["epoch"] == 30  # the last epoch's record (no held-out items here: no AUROC)
        assert listed["arith_steps"].reward_model is None
        yield await verifiers.get("orm").score(batch(), scoring_session())
        steps = await verifiers.get("prm").score(batch(), scoring_session())
        assert [len(row) for row in steps] == [2] * len(batch())  # a tag, and a score, after each step
    finally:
        await verifiers.aclose()
        await reward.scorer.aclose()


def test_served_in_process_it_ranks_what_it_learned(inprocess_scores: list[list[float]]) -> None:
    assert_right_above_wrong(inprocess_scores)


async def test_served_by_a_reward_server_it_scores_the_same(
    reward_server: str, reward_dir: Path, inprocess_scores: list[list[float]]
) -> None:
    tag = load_reward_meta(reward_dir)["step_tag"]
    verifiers = VerifierSet.build(Settings(prm=PrmOptions(url=reward_server, step_tag=tag, system_prompt="")))
    try:
        remote = await verifiers.get("orm").score(batch(), scoring_session())
    finally:
        await verifiers.aclose()
    assert_right_above_wrong(remote)
    for here, there in zip(inprocess_scores, remote, strict=True):
        assert here[0] == pytest.approx(there[0], abs=0.02)


async def test_a_foreign_or_missing_artifact_stops_the_start(reward_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="trained on smollm2-135m's samples"):
        await open_reward_model(Settings(reward=RewardOptions(model=reward_dir)), "qwen2.5-coder-0.5b")
    with pytest.raises(ConfigurationError, match=f"{ARTIFACT_FILE} is missing"):
        await open_reward_model(Settings(reward=RewardOptions(model=tmp_path)), "smollm2-135m")
    both = Settings(reward=RewardOptions(model=reward_dir), prm=PrmOptions(url="http://127.0.0.1:9"))
    with pytest.raises(ConfigurationError, match="both TTC_REWARD__MODEL"):
        await open_reward_model(both, "smollm2-135m")


@pytest.mark.parametrize("trainable", [1, 3])
def test_training_on_the_cache_computes_what_the_whole_model_serves(model_dir: Path, trainable: int) -> None:
    """The frozen bottom's cached states through the trained top give the whole model's logits at
    the tags (up to the cache's bfloat16 rounding): what is trained is what vLLM serves."""
    import torch

    from harness.reward_training import RewardModel, padded

    model = RewardModel(model_dir, trainable, torch.device("cpu"))
    model.amp = None  # exact float32 on both paths; only the cache is rounded
    torch.nn.init.normal_(model.model.score.weight, std=0.05, generator=torch.Generator().manual_seed(0))
    ids = [torch.tensor([1, 504, 3, 99, 17, 42]), torch.tensor([1, 70, 17])]
    tags = [torch.tensor([4, 5]), torch.tensor([2])]
    stacked, mask = padded(ids)
    cached = model.logits_at_tags(model.frozen_states(stacked, mask), mask, tags)
    with torch.no_grad():
        for row, (tokens, where) in enumerate(zip(ids, tags, strict=True)):
            whole = model.model.score(model.model.model(input_ids=tokens[None]).last_hidden_state)[0, where]
            assert torch.allclose(cached[row], whole, atol=0.02), (cached[row], whole)

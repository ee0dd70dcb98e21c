"""The PRM verifier against a real vLLM pooling server on loopback.

The server is the reward-model tests' (``reward_server``): the test model fine-tuned on a dozen
solutions, a 2-label token classifier pooled at its step tag. Its scores barely mean anything
here, but the wire contract (``POST /pooling``, one ``[p_bad, p_good]`` pair per tag) is the one a
real PRM such as Qwen2.5-Math-PRM speaks.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.errors import BackendError, BackendUnavailableError, ConfigurationError
from orchestrator.core.session import Session
from orchestrator.core.settings import Settings
from orchestrator.core.verification import ScoreRequest
from verifiers.prm import ProcessRewardModel, format_prm_input, step_probabilities
from verifiers.registry import VerifierSet
from verifiers.reward import load_reward_meta

pytestmark = [pytest.mark.engine, pytest.mark.slow]

STEP_TAG = "\n"  # the pure layout tests' tag; the server pools at its own (``server_tag``)


@pytest.fixture(scope="module")
def server_tag(reward_dir: Path) -> str:
    return load_reward_meta(reward_dir)["step_tag"]


def new_context() -> Session:
    # Scoring never generates, so no backend is needed; the meter is what the test reads.
    return Session(backend=None, meter=BudgetMeter(Budget()))  # type: ignore[arg-type]


BATCH = [
    ScoreRequest("What is 2 + 3?", ("2 + 3 = 5.",)),
    ScoreRequest("What is 4 * 5?\nShow your work.", ("4 * 5 = 20.", "The answer is 20.")),
    ScoreRequest("What is 10 - 7?", ("Start with 10.\nTake away 7.", "10 - 7 = 3.", "The answer is \\boxed{3}.")),
]


@pytest.mark.parametrize("tag", [STEP_TAG, "<extra_0>"])
async def test_format_puts_exactly_one_tag_after_each_step(tag: str) -> None:
    steps = ["First\nline", f"has a {tag} inside", "  padded  \n\n"]
    text = format_prm_input(f"Question {tag} with the tag?", steps, tag)
    assert text.count(tag) == len(steps)
    answer = text.split("<|im_start|>assistant", 1)[1]
    pieces = answer.split(tag)
    assert len(pieces) == len(steps) + 1 and pieces[-1].strip() == "<|im_end|>"
    assert pieces[1] == "has a   inside" and pieces[2] == "padded"  # the inner tag became a space; stripped
    assert "Question" in text.split("<|im_start|>assistant", 1)[0]


async def test_format_matches_qwen_prm_layout() -> None:
    text = format_prm_input("1+1?", ["1+1=2", "So 2."], "<extra_0>", system="Reason.")
    assert text == (
        "<|im_start|>system\nReason.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n"
        "<|im_start|>assistant\n1+1=2<extra_0>So 2.<extra_0><|im_end|>\n"
    )


async def test_scores_a_batch_one_probability_per_step(reward_server: str, server_tag: str) -> None:
    session = new_context()
    async with ProcessRewardModel(reward_server, step_tag=server_tag) as prm:
        scores = await session.score_steps(prm, BATCH)
        assert prm.model  # discovered from /v1/models
    assert [len(s) for s in scores] == [len(r.steps) for r in BATCH]
    assert all(isinstance(x, float) and 0.0 <= x <= 1.0 for s in scores for x in s)
    assert session.meter.usage.verifier_calls == len(BATCH)


async def test_borrowed_client_named_model_and_empty_steps(
    reward_server: str, server_tag: str, reward_dir: Path
) -> None:
    session = new_context()
    async with httpx.AsyncClient(timeout=120) as client:
        prm = ProcessRewardModel(reward_server, str(reward_dir), step_tag=server_tag, system_prompt=None, client=client)
        scores = await session.score_steps(prm, [ScoreRequest("Q?", ()), BATCH[0]])
        await prm.aclose()  # must not close the borrowed client
        assert not client.is_closed
    assert len(scores[0]) == 0 and len(scores[1]) == 1
    assert session.meter.usage.verifier_calls == 2


async def test_logits_are_turned_into_probabilities(reward_server: str, server_tag: str) -> None:
    # With the activation off the server returns the head's raw logits.
    text = format_prm_input("Q?", ["a", "b"], server_tag)
    async with httpx.AsyncClient(timeout=120) as client:
        model = (await client.get(f"{reward_server}/v1/models")).json()["data"][0]["id"]
        body = {"model": model, "input": text, "task": "token_classify", "use_activation": False}
        response = await client.post(f"{reward_server}/pooling", json=body)
    rows = response.json()["data"][0]["data"]
    assert len(rows) == 2 and any(abs(sum(row) - 1) > 0.01 for row in rows)  # really logits
    assert all(0.0 <= p <= 1.0 for p in step_probabilities(rows))


async def test_a_tag_the_server_does_not_pool_on_is_reported(reward_server: str) -> None:
    # "<extra_0>" is not the server's tag token: the counts cannot match.
    async with ProcessRewardModel(reward_server, step_tag="<extra_0>") as prm:
        with pytest.raises(BackendError, match=r"returned .* step scores for 2 steps.*TTC_PRM__STEP_TAG"):
            await new_context().score_steps(prm, [BATCH[1]])


async def test_http_errors_carry_the_server_message(reward_server: str, server_tag: str) -> None:
    async with ProcessRewardModel(reward_server, "no-such-model", step_tag=server_tag) as prm:
        with pytest.raises(BackendError, match=r"does not exist.*TTC_PRM__MODEL") as caught:
            await new_context().score_steps(prm, BATCH)
    assert not isinstance(caught.value, BackendUnavailableError)


async def test_unreachable_server_names_the_setting() -> None:
    session = new_context()
    async with ProcessRewardModel("http://127.0.0.1:1", step_tag=STEP_TAG) as prm:
        with pytest.raises(BackendUnavailableError, match="TTC_PRM__URL"):
            await session.score_steps(prm, BATCH)
    assert session.meter.usage.verifier_calls == 0


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No PRM settings from the environment, a ``.env`` or a ``ttc.toml``."""
    monkeypatch.chdir(tmp_path)
    for name in ("TTC_CONFIG_FILE", "TTC_PRM__URL", "TTC_PRM__MODEL", "TTC_PRM__STEP_TAG"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def test_registry_needs_a_prm_url(clean_settings: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="TTC_PRM__URL"):
        VerifierSet.build(Settings()).get("prm")


async def test_registry_builds_the_prm_from_settings(
    clean_settings: pytest.MonkeyPatch, reward_server: str, server_tag: str
) -> None:
    clean_settings.setenv("TTC_PRM__URL", reward_server)
    clean_settings.setenv("TTC_PRM__STEP_TAG", server_tag)
    verifiers = VerifierSet.build(Settings())
    prm = verifiers.get("prm")
    assert isinstance(prm, ProcessRewardModel) and prm.name == "prm"
    try:
        [scores] = await new_context().score_steps(prm, [BATCH[2]])
    finally:
        await verifiers.aclose()
    assert len(scores) == 3 and prm._client is None  # the client it opened is closed with the set

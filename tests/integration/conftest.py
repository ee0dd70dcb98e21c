"""Fixtures the integration tests share.

- The real app on a real port with real Redis and the scripted backend: for API logic tests
  (generation itself is tested on the engine).
- A reward model trained on a handful of solutions, and one ``vllm serve --runner pooling`` server
  serving it: the reward-model tests and the PRM wire-contract tests both score through it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn

from api.app import create_app
from harness.datasets import content_hash
from harness.reward_data import RewardExample, outcome_steps
from harness.reward_training import Trainer, TrainingConfig
from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.settings import Settings
from orchestrator.core.store import Store
from service.runtime import Runtime
from tests.conftest import free_port, serve_vllm
from tests.sessions import VERIFIERS
from verifiers.reward import load_reward_meta

StartApi = Callable[..., Awaitable[tuple[str, Store]]]


def answer_seven(prompt, sampling) -> list[str]:
    return ["3 + 4 = 7. The answer is 7."] * sampling.n


def slow_on_request(prompt: str) -> float:
    """Prompts that say "slow please" take 30 s (to test cancels and disconnects)."""
    return 30.0 if "slow please" in prompt else 0.0


@pytest.fixture
async def start_api(redis_connection) -> AsyncIterator[StartApi]:
    """``await start_api(**settings)`` serves an app; returns its base URL and its store."""
    servers: list[tuple[uvicorn.Server, asyncio.Task]] = []

    async def start(**overrides: Any) -> tuple[str, Store]:
        settings = Settings(redis_namespace=f"api-{uuid.uuid4().hex[:8]}", **overrides)
        store = Store(redis_connection, settings.redis_namespace)
        backend = ScriptedBackend(answer_seven, delay_s=slow_on_request)
        port = free_port()
        app = create_app(settings, Runtime(settings, backend, store, VERIFIERS))
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
        # A plain task, not a task group: pytest runs fixture set-up and tear-down in different tasks.
        servers.append((server, asyncio.get_running_loop().create_task(server.serve())))
        while not server.started:  # noqa: ASYNC110 (uvicorn has no start-up event)
            await anyio.sleep(0.05)
        return f"http://127.0.0.1:{port}", store

    yield start
    for server, serving in servers:
        server.should_exit = True
        await serving


@pytest.fixture
async def api(start_api: StartApi) -> tuple[str, Store]:
    """The app with a 4 kB request limit and default settings otherwise."""
    return await start_api(max_request_bytes=4096)


EXACT = "float32"  # the reward model's dtype on both engines, so "the same scores" can be checked tightly
PAIRS = [(2, 3), (4, 5), (7, 6), (9, 8), (12, 3), (15, 7)]


def labelled_solutions() -> list[tuple[str, str, float]]:
    """(question, solution, label): each sum solved right, and wrong by one."""
    rows = []
    for a, b in PAIRS:
        question = f"What is {a} + {b}?"
        rows.append((question, f"{a} + {b} = {a + b}\n\nThe answer is {a + b}.", 1.0))
        rows.append((question, f"{a} + {b} = {a + b + 1}\n\nThe answer is {a + b + 1}.", 0.0))
    return rows


@pytest.fixture(scope="session")
def reward_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model fine-tuned as an outcome reward model on ``labelled_solutions``; its loss must fall."""
    out = tmp_path_factory.mktemp("reward") / "orm"
    examples = [
        RewardExample(f"q{i // 2}", content_hash(q), q, outcome_steps(text), (label,))
        for i, (q, text, label) in enumerate(labelled_solutions())
    ]
    config = TrainingConfig(trainable_layers=2, epochs=30, batch_size=2, learning_rate=1e-4, validation_share=0.0)
    meta = Trainer(model_dir, out, config).train(examples, {"judged_model": "smollm2-135m"})
    losses = [row["train_loss"] for row in meta["history"]]
    assert losses[0] < 0.8  # the zero head starts at chance (ln 2), not at a random head's huge logits
    assert losses[-1] < 0.3, f"the loss did not fall well below chance: {losses}"
    return out


@pytest.fixture(scope="session")
def reward_server(reward_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The trained reward model on a real ``vllm serve --runner pooling`` server, as a fleet runs a
    PRM: one ``[p_bad, p_good]`` pair per step tag, read by the ``prm`` and ``orm`` verifiers."""
    tag_id = load_reward_meta(reward_dir)["step_tag_id"]
    pooler = {"task": "token_classify", "tok_pooling_type": "STEP", "step_tag_id": tag_id}
    log_path = tmp_path_factory.mktemp("reward-server") / "server.log"
    with serve_vllm(reward_dir, log_path, ["--runner", "pooling", "--pooler-config", json.dumps(pooler)], EXACT) as url:
        yield url

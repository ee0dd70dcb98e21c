"""Fixtures the integration tests share.

- The real app on a real port with real Redis and the scripted backend: for API logic tests
  (generation itself is tested on the engine).
- A reward model trained on a handful of solutions, and one ``vllm serve --runner pooling`` server
  serving it (``tests.reward_server``, started with the session): the reward-model tests and the
  PRM wire-contract tests both score through it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn

from api.app import create_app
from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.settings import Settings
from orchestrator.core.store import Store
from service.runtime import Runtime
from tests.conftest import early_root, free_port
from tests.early import take
from tests.sessions import VERIFIERS

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


@pytest.fixture(scope="session")
def reward_dir(request: pytest.FixtureRequest) -> Path:
    """The test model fine-tuned as an outcome reward model on ``labelled_solutions`` (trained in
    the background from the start of the session: ``tests.reward_server``); its loss must fall."""
    model = take("reward_dir", early_root(request.config))
    losses = [row["train_loss"] for row in model.trained()["history"]]
    assert losses[0] < 0.8  # the zero head starts at chance (ln 2), not at a random head's huge logits
    assert losses[-1] < 0.3, f"the loss did not fall well below chance: {losses}"
    return model.directory


@pytest.fixture(scope="session")
def reward_server(request: pytest.FixtureRequest, reward_dir: Path) -> str:
    """The trained reward model on a real ``vllm serve --runner pooling`` server, as a fleet runs a PRM."""
    return take("reward_server", early_root(request.config)).ready()

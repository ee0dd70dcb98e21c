"""Shared fixtures: the real embedded engine, a real `vllm serve` subprocess and real Redis.

Engines are expensive (about 30 s each on 2 cores), so each is built once per session and only
when a selected test needs it. Servers of their own (the session's `vllm serve`, the reward
model's, ``make run`` on the default model) start the moment the tests are collected, while the
unit tests (ordered first) run: ``tests.early``.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The suite runs on the small catalogue model for speed (the serving default is qwen2.5-coder-0.5b;
# tests/integration/test_default_model.py pulls and runs that one). Subprocesses inherit it.
os.environ.setdefault("TTC_MODEL", "smollm2-135m")

from cli.fleet import free_port, is_ready  # noqa: F401 (free_port: the tests import it from here)
from orchestrator.core.backends.inprocess import InProcessBackend
from orchestrator.core.backends.remote import RemoteBackend
from orchestrator.core.model_catalog import ensure_model
from orchestrator.core.settings import EngineOptions, RemoteOptions, Settings
from orchestrator.core.store import RedisConnection, Store, open_redis
from tests.early import start_early, stop_all, take
from tests.servers import CommandServer, VllmServer

TEST_MODEL = os.environ["TTC_MODEL"]
ENGINE_OPTIONS = EngineOptions(max_model_len=2048, cpu_kv_cache_space_gib=1)


def wait_for_http(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        if is_ready(f"http:{url}"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The converted test model (pulled on first use)."""
    return ensure_model(Settings().model_cache_dir, TEST_MODEL)


@pytest.fixture(scope="session")
async def inprocess_backend(model_dir: Path) -> AsyncIterator[InProcessBackend]:
    backend = await InProcessBackend.start(str(model_dir), ENGINE_OPTIONS)
    yield backend
    await backend.aclose()


def early_root(config: pytest.Config) -> Path:
    """Where servers started early keep their files: the session's pytest temporary directory."""
    return config._tmp_path_factory.getbasetemp() / "early"  # the tmp_path_factory fixture's own


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The unit tests first (in their order): they run on one core while the servers the rest need
    start on the other (``tests.early``)."""
    items.sort(key=lambda item: 0 if "unit" in item.path.relative_to(config.rootpath).parts[:2] else 1)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or session.testsfailed:  # nothing will run, or collection failed
        return
    needed = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    start_early(needed, early_root(session.config))


def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_all()


@pytest.fixture(scope="session")
def vllm_server(request: pytest.FixtureRequest) -> str:
    """A real vLLM OpenAI server on loopback serving the embedded model (started early, stopped
    when the session ends)."""
    return take("vllm_server", early_root(request.config)).ready()


@pytest.fixture
def second_vllm_server(request: pytest.FixtureRequest) -> VllmServer:
    """Another `vllm serve` of the embedded model, started early and not waited for (the fleet
    test kills it; the session's end stops what is left)."""
    return take("second_vllm_server", early_root(request.config))


@pytest.fixture
def default_model_server(request: pytest.FixtureRequest) -> CommandServer:
    """``make run`` on the serving default, started early; the test stops it (else the session's end does)."""
    return take("default_model_server", early_root(request.config))


@pytest.fixture(scope="session")
async def remote_backend(vllm_server: str, model_dir: Path) -> AsyncIterator[RemoteBackend]:
    backend = await RemoteBackend.connect(RemoteOptions(urls=[vllm_server]), tokenizer=str(model_dir))
    yield backend
    await backend.aclose()


@pytest.fixture(scope="session")
async def redis_connection(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RedisConnection]:
    """One embedded Redis for the session; tests isolate themselves by namespace."""
    connection = await open_redis(None, tmp_path_factory.mktemp("redis-data"))
    yield connection
    await connection.aclose()


@pytest.fixture
def store(redis_connection: RedisConnection) -> Store:
    return Store(redis_connection, namespace=f"test-{uuid.uuid4().hex[:8]}")

"""Shared fixtures: the real embedded engine, a real `vllm serve` subprocess and real Redis.

Engines are expensive (about 30 s each on 2 cores), so each is built once per session
and only when a test asks for it.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The suite runs on the small catalogue model for speed (the serving default is qwen2.5-coder-0.5b;
# tests/integration/test_default_model.py pulls and runs that one). Subprocesses inherit it.
os.environ.setdefault("TTC_MODEL", "smollm2-135m")

from cli.fleet import PREFIX_CACHING_ARGS, Fleet, Member, free_port, is_ready, vllm_server_command, vllm_server_env
from orchestrator.core.backends.inprocess import InProcessBackend, engine_dtype
from orchestrator.core.backends.remote import RemoteBackend
from orchestrator.core.model_catalog import ensure_model
from orchestrator.core.settings import EngineOptions, RemoteOptions, Settings
from orchestrator.core.store import RedisConnection, Store, open_redis

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


@contextmanager
def serve_vllm(model_dir: Path, log_path: Path, extra_args: list[str], dtype: str | None = None) -> Iterator[str]:
    """Run a vLLM OpenAI server on loopback (a fleet of one); yields its base URL. Stopping it
    stops its whole process group: an engine core left behind would eat the cores of every test
    after it.

    ``dtype`` None picks what ttc's own engine would on this CPU.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = vllm_server_command(model_dir, port, engine_dtype(dtype), extra_args)
    env = vllm_server_env(f"0-{(os.cpu_count() or 1) - 1}")
    server = Member("vllm", command, env, str(log_path), f"http:{url}/health")
    fleet = Fleet(log_path.parent, "", "", [url], [server])
    try:
        fleet.start("vllm", timeout_s=300)
        yield url
    finally:
        fleet.down()


@pytest.fixture(scope="session")
def vllm_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real vLLM OpenAI server on loopback serving the embedded model."""
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with serve_vllm(model_dir, log_path, PREFIX_CACHING_ARGS) as url:
        yield url


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

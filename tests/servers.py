"""Servers the tests start as processes of their own: a `vllm serve` on loopback, and ``ttc serve``
on the serving default as ``make run`` starts it.

    server = start_vllm(model_dir, log_path, PREFIX_CACHING_ARGS)
    url = server.ready()   # once it answers
    server.stop()          # its whole process group
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cli.fleet import Fleet, Member, free_port, vllm_server_command, vllm_server_env
from orchestrator.core.backends.inprocess import engine_dtype
from orchestrator.core.model_catalog import DEFAULT_MODEL, ensure_model
from orchestrator.core.settings import Settings


@dataclass
class VllmServer:
    """A `vllm serve` on loopback (a fleet of one), started and not yet waited for."""

    fleet: Fleet
    url: str

    def ready(self, timeout_s: float = 300) -> str:
        """Its base URL, once it answers (raises with its log's end if it died or took too long)."""
        self.fleet.wait_ready("vllm", timeout_s)
        return self.url

    def stop(self) -> None:
        """Stop its whole process group: an engine core left behind would eat every later test's cores."""
        self.fleet.down()


def start_vllm(model_dir: Path, log_path: Path, extra_args: list[str], dtype: str | None = None) -> VllmServer:
    """Start a vLLM OpenAI server on ``model_dir``; ``dtype`` None picks what ttc's engine would here."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = vllm_server_command(model_dir, port, engine_dtype(dtype), extra_args)
    env = vllm_server_env(f"0-{(os.cpu_count() or 1) - 1}")
    fleet = Fleet(log_path.parent, "", "", [url], [Member("vllm", command, env, str(log_path), f"http:{url}/health")])
    fleet.start("vllm", wait=False)
    return VllmServer(fleet, url)


@dataclass
class CommandServer:
    """A ``ttc`` command serving on ``port`` in its own process group, its output in ``log``."""

    process: subprocess.Popen
    port: int
    log: Path
    env: dict[str, str] = field(repr=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


def start_default_model(log_root: Path) -> CommandServer:
    """``make run``: ``ttc serve --demo-question`` on the serving default (no ``TTC_MODEL``), an
    embedded engine and Redis; the default-model test checks it and stops it with Ctrl-C."""
    ensure_model(Settings().model_cache_dir, DEFAULT_MODEL)  # `make install` pulled it already
    root = log_root / "default-model"
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTC_") and k != "REDIS_URL"}
    env |= {"TTC_DATA_DIR": str(root / "data"), "TTC_ENGINE__CPU_KV_CACHE_SPACE_GIB": "1",
            "TTC_ENGINE__MAX_MODEL_LEN": "1024"}  # fmt: skip
    port = free_port()
    log = root / "default.log"
    command = [sys.executable, "-m", "cli", "serve", "--port", str(port), "--demo-question", "What is 7 + 5?"]
    with log.open("w") as out:  # the server keeps its own copy of the descriptor
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            process_group=0,  # leading its own group, as a shell runs a foreground command
        )
    return CommandServer(process, port, log, env)


def wait_for_text(server: CommandServer, text: str, timeout_s: float) -> str:
    """The server's log once ``text`` is in it; fails with the log's end if it exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while text not in (shown := server.log.read_text()):
        assert server.process.poll() is None, shown[-3000:]
        assert time.monotonic() < deadline, shown[-3000:]
        time.sleep(0.5)
    return shown

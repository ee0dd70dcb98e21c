"""Two `ttc worker` processes on one Redis; one is killed mid-job and the other finishes it, once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from orchestrator.core.store import JobRecord, Store, open_redis
from service.jobs import JobQueue
from tests.integration.test_cli_and_server import remote_env

pytestmark = [pytest.mark.remote, pytest.mark.slow, pytest.mark.subprocess]


def start_worker(tmp_path: Path, name: str, vllm_server: str, model_dir: Path) -> subprocess.Popen:
    """A worker on the session's `vllm serve` (killing it drops its connection: vLLM aborts the request)."""
    env = remote_env(tmp_path, vllm_server, model_dir, TTC_JOB_STALE_AFTER_S="4", TTC_WORKER_CONCURRENCY="1")
    with (tmp_path / f"{name}.log").open("w") as log:  # the worker keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,  # its own process group: a kill takes the whole worker
        )


async def wait_for(predicate, limit_s: float, what: str) -> None:
    with anyio.fail_after(limit_s):
        while not await predicate():  # noqa: ASYNC110 (polling Redis state)
            await anyio.sleep(0.2)


async def test_a_killed_workers_job_is_finished_exactly_once_by_the_other(
    tmp_path: Path, vllm_server: str, model_dir: Path
) -> None:
    connection = await open_redis(None, tmp_path / "data")  # the workers join this embedded Redis
    store = Store(connection)
    queue = JobQueue(store)
    await queue.ensure_group()
    first = start_worker(tmp_path, "first", vllm_server, model_dir)
    second: subprocess.Popen | None = None
    try:
        params = {"max_tokens": 400, "temperature": 1.0}
        job = await store.create_job(JobRecord(question="Write a story about a cat.", params=params), enqueue=True)

        async def running() -> bool:
            return (await store.get_job(job.id)).status == "running"

        await wait_for(running, 300, "the first worker to start the job")
        os.killpg(first.pid, signal.SIGKILL)  # the whole worker, mid-job: no result, no ack
        victim = (await store.get_job(job.id)).owner
        second = start_worker(tmp_path, "second", vllm_server, model_dir)

        async def finished() -> bool:
            return (await store.get_job(job.id)).status == "succeeded"

        await wait_for(finished, 400, "the second worker to take the job over")
        done = await store.get_job(job.id)
        assert done.owner != victim and done.attempts == 2
        assert done.usage.completion_tokens > 0 and done.output
        assert await store.redis.xlen(store.keys.job_stream()) == 0
        assert sum(1 for _, e in await store.read_events(job.id) if e["type"] == "result") == 1
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                # SIGTERM, as docker and systemd stop a worker (a shell's background job ignores SIGINT)
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # no worker process outlives the test
                process.wait(30)  # reaped: a killed worker is not left a zombie
        await connection.aclose()

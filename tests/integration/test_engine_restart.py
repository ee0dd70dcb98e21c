"""The engine core dying mid-request: a clear error, a restart, nothing stored lost.

Runs on the session's engine (and leaves it restarted), so it is named to run after the
other engine tests of this directory.
"""

from __future__ import annotations

import os
import signal

import anyio
import psutil
import pytest

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.errors import EngineDiedError
from orchestrator.core.store import JobRecord

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def engine_core_processes() -> list[psutil.Process]:
    """The in-process engine's core: a direct child (a `vllm serve` fixture's core is a grandchild)."""
    return [p for p in psutil.Process(os.getpid()).children(recursive=False) if "EngineCore" in p.name()]


async def test_engine_death_fails_in_flight_requests_then_recovers(inprocess_backend, store) -> None:
    kept = await store.create_job(JobRecord(question="stored before the crash", answer="42"))
    prompt = inprocess_backend.renderer.render_question("Write a very long story about a lighthouse.")
    [core] = engine_core_processes()
    failures: list[EngineDiedError] = []

    async def long_generation() -> None:
        try:
            await inprocess_backend.generate([prompt], SamplingSettings(max_tokens=1500, temperature=1.0))
        except EngineDiedError as error:
            failures.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(long_generation)
        await anyio.sleep(1.0)
        os.kill(core.pid, signal.SIGKILL)
    assert failures and "restarted" in failures[0].message

    with anyio.fail_after(240):  # the engine is rebuilt in the background
        while True:
            try:
                await inprocess_backend.health()
                break
            except Exception:
                await anyio.sleep(1)
    assert inprocess_backend.restarts == 1
    [result] = await inprocess_backend.generate([prompt], SamplingSettings(max_tokens=8))
    assert result.completion_tokens > 0
    assert (await store.get_job(kept.id)).answer == "42"

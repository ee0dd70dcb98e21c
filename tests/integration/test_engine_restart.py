"""The engine core dying mid-request: a clear error, a restart, the job run once more on the
rebuilt engine with both attempts charged, nothing stored lost.

Runs on the session's engine and leaves it restarted (and working): it counts restarts from
what it finds, so it passes in any order.
"""

from __future__ import annotations

import os
import signal

import anyio
import psutil
import pytest

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.errors import EngineDiedError
from orchestrator.core.settings import Settings
from orchestrator.core.store import JobRecord
from service.runtime import Runtime
from tests.sessions import VERIFIERS

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def engine_core_processes() -> list[psutil.Process]:
    """The in-process engine's core: a direct child (a `vllm serve` fixture's core is a grandchild)."""
    return [p for p in psutil.Process(os.getpid()).children(recursive=False) if "EngineCore" in p.name()]


async def test_engine_death_fails_in_flight_requests_then_recovers(inprocess_backend, store) -> None:
    kept = await store.create_job(JobRecord(question="stored before the crash", answer="42"))
    story = "Write a very long story about a lighthouse."
    prompt = inprocess_backend.renderer.render_question(story)
    runtime = Runtime(Settings(), inprocess_backend, store, VERIFIERS)
    job = await runtime.submit(story, strategy="direct", params={"max_tokens": 400, "temperature": 1.0})
    [core] = engine_core_processes()
    restarts_before = inprocess_backend.restarts
    failures: list[EngineDiedError] = []
    finished: list[JobRecord] = []

    async def long_generation() -> None:
        try:
            await inprocess_backend.generate([prompt], SamplingSettings(max_tokens=1500, temperature=1.0))
        except EngineDiedError as error:
            failures.append(error)

    async def the_job() -> None:
        finished.append(await runtime.run_inline(job))

    async with anyio.create_task_group() as group:
        group.start_soon(long_generation)
        group.start_soon(the_job)
        with anyio.fail_after(60):
            while (await inprocess_backend.counters()).generation_tokens < 40:  # noqa: ASYNC110
                await anyio.sleep(0.1)  # both under way
        os.kill(core.pid, signal.SIGKILL)
        with anyio.fail_after(300):  # the job waits for the rebuilt engine and runs once more
            while not finished:  # noqa: ASYNC110
                await anyio.sleep(0.5)
    assert failures and "restarted" in failures[0].message  # a bare request fails, clearly
    assert inprocess_backend.restarts == restarts_before + 1

    [done] = finished
    retries = [event for _, event in await store.read_events(job.id) if event["type"] == "retry"]
    assert done.status == "succeeded" and done.output and [e["reason"] for e in retries] == ["engine_died"]
    # The second attempt answered; the bill holds what it decoded. (The first attempt's tokens died
    # with the engine before a result reached the meter, so a dead request costs nothing here.)
    assert done.usage.completion_tokens > 0 and done.usage.model_calls >= 1

    [result] = await inprocess_backend.generate([prompt], SamplingSettings(max_tokens=8))
    assert result.completion_tokens > 0
    assert (await store.get_job(kept.id)).answer == "42"

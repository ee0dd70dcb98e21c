"""Admission by sequences in flight: first come, first served, never over the capacity."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.core.admission import StreamSlots


async def test_work_is_admitted_by_its_sequences_in_arrival_order() -> None:
    slots = StreamSlots(16)
    started: list[str] = []
    peak = 0

    async def job(name: str, streams: int, hold_s: float) -> None:
        nonlocal peak
        async with slots.hold(streams):
            started.append(name)
            peak = max(peak, slots.in_flight)
            await anyio.sleep(hold_s)

    async with anyio.create_task_group() as group:
        for name, streams in (("wide-a", 12), ("narrow-b", 4), ("wide-c", 12), ("narrow-d", 1)):
            group.start_soon(job, name, streams, 0.05)
            await anyio.sleep(0.001)  # arrive in this order
    # a and b fill 16; c waits for room, and d (which would fit) waits behind c: no starving the wide
    assert started == ["wide-a", "narrow-b", "wide-c", "narrow-d"] and peak == 16
    assert slots.in_flight == 0


async def test_wider_than_the_capacity_runs_alone_and_cancelled_waiters_leave() -> None:
    slots = StreamSlots(8)
    async with slots.hold(100) as weight:
        assert weight == 8 and slots.in_flight == 8
        with anyio.move_on_after(0.05):
            async with slots.hold(1):
                pytest.fail("admitted past the capacity")
        assert not slots._waiting  # the cancelled waiter is gone
    async with slots.hold(3), slots.hold(5):
        assert slots.in_flight == 8
    assert slots.in_flight == 0


def test_a_job_weighs_the_sequences_its_strategy_decodes_at_once() -> None:
    from orchestrator.core.store import JobRecord
    from service.runtime import job_streams

    assert job_streams(JobRecord(question="q", strategy="best_of_n", params={"n": 16})) == 16
    assert job_streams(JobRecord(question="q", strategy="beam_search", params={"width": 4, "samples_per_beam": 2})) == 8
    assert job_streams(JobRecord(question="q")) == 1
    assert job_streams(JobRecord(question="q", strategy="best_of_n", params={"n": "many"})) == 1  # fails on its own

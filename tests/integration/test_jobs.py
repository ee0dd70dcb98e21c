"""The job queue and workers on real Redis, with a stand-in job runner (pure queue logic)."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.core.errors import StoreUnavailableError
from orchestrator.core.store import JobRecord, Store
from service import jobs
from service.jobs import JobQueue, Worker


def runner(seconds: float, log: list[str]):
    async def run(job: JobRecord) -> JobRecord:
        log.append(job.id)
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            job.status = "cancelled"
            raise
        job.status, job.answer = "succeeded", "42"
        return job

    return run


async def submit(store: Store, queue: JobQueue) -> JobRecord:
    """A job stored and queued in one step, as the API submits one (``queue`` has its group)."""
    return await store.create_job(JobRecord(question="q"), enqueue=True)


async def wait_for_status(store: Store, job_id: str, statuses: set[str], limit_s: float = 10) -> JobRecord:
    """Poll the stored record (the store offers no change notification to wait on)."""
    with anyio.fail_after(limit_s):
        while (job := await store.get_job(job_id)).status not in statuses:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return job


async def test_a_worker_runs_a_job_and_acknowledges_it(store: Store) -> None:
    queue, ran = JobQueue(store), []
    await queue.ensure_group()
    job = await submit(store, queue)
    worker = Worker(store, runner(0.1, ran), poll_ms=100)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.serve)
        done = await wait_for_status(store, job.id, {"succeeded"})
        group.cancel_scope.cancel()
    assert done.answer == "42" and done.owner == worker.name and done.attempts == 1
    assert ran == [job.id] and worker.finished == 1
    assert await store.redis.xlen(store.keys.job_stream()) == 0


async def test_a_dead_workers_job_is_taken_over_and_finished_exactly_once(store: Store) -> None:
    queue, ran = JobQueue(store), []
    await queue.ensure_group()
    job = await submit(store, queue)
    # worker "ghost" takes the job and then stops answering (no claim refreshes, no result)
    _, job_id = await queue.next("ghost", stale_after_s=60, block_ms=100)
    ghost_copy = await store.claim_job(job_id, "ghost")
    assert ghost_copy is not None
    rescuer = Worker(store, runner(0.1, ran), name="rescuer", stale_after_s=0.5, poll_ms=100)
    async with anyio.create_task_group() as group:
        group.start_soon(rescuer.serve)
        done = await wait_for_status(store, job.id, {"succeeded"})
        group.cancel_scope.cancel()
    assert done.owner == "rescuer" and done.attempts == 2 and ran == [job.id]
    # the ghost comes back late: its outcome is refused, the rescuer's stands
    ghost_copy.status, ghost_copy.answer = "succeeded", "ghost answer"
    assert not await store.finish_job(ghost_copy, "ghost")
    assert (await store.get_job(job.id)).answer == "42"
    assert await store.redis.xlen(store.keys.job_stream()) == 0


async def test_a_worker_beats_while_redis_answers_and_not_while_it_does_not(
    store: Store, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "HEARTBEAT_S", 0.05)
    heartbeat = tmp_path / "worker.alive"
    worker = Worker(store, runner(0.1, []), poll_ms=100, heartbeat_file=heartbeat)
    answering = store.ping

    async def redis_away() -> None:
        raise StoreUnavailableError("Redis is away")

    async def wait_for_beat() -> None:
        with anyio.fail_after(10):
            while not heartbeat.exists():  # noqa: ASYNC110 (polls a file the worker writes)
                await anyio.sleep(0.02)

    async with anyio.create_task_group() as group:
        group.start_soon(worker.serve)
        await wait_for_beat()
        monkeypatch.setattr(store, "ping", redis_away)
        await anyio.sleep(0.1)  # a beat in flight when Redis went away may still land
        heartbeat.unlink(missing_ok=True)
        await anyio.sleep(0.5)  # ten beats' time
        assert not heartbeat.exists()  # no beat while Redis does not answer: health checks see it stale
        monkeypatch.setattr(store, "ping", answering)
        await wait_for_beat()  # and beats again once it does
        group.cancel_scope.cancel()


async def test_a_busy_worker_keeps_its_claim(store: Store) -> None:
    queue, ran = JobQueue(store), []
    await queue.ensure_group()
    job = await submit(store, queue)
    slow = Worker(store, runner(1.5, ran), name="slow", stale_after_s=0.6, poll_ms=100)
    thief = Worker(store, runner(0.1, ran), name="thief", stale_after_s=0.6, poll_ms=100)
    async with anyio.create_task_group() as group:
        group.start_soon(slow.serve)
        await anyio.sleep(0.3)
        group.start_soon(thief.serve)
        done = await wait_for_status(store, job.id, {"succeeded"})
        group.cancel_scope.cancel()
    assert done.owner == "slow" and ran == [job.id]  # refreshed claims kept the job away from the thief


async def test_cancelling_a_running_job_stops_its_work(store: Store) -> None:
    queue, ran = JobQueue(store), []
    await queue.ensure_group()
    job = await submit(store, queue)
    worker = Worker(store, runner(30, ran), poll_ms=100)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.serve)
        await wait_for_status(store, job.id, {"running"})
        assert (await store.request_cancel(job.id)).status == "cancelling"
        done = await wait_for_status(store, job.id, {"cancelled"}, limit_s=5)
        group.cancel_scope.cancel()
    assert done.status == "cancelled" and done.answer is None


async def test_cancelling_a_queued_job_is_immediate_and_its_entry_is_skipped(store: Store) -> None:
    queue, ran = JobQueue(store), []
    await queue.ensure_group()
    job = await submit(store, queue)
    assert (await store.request_cancel(job.id)).status == "cancelled"
    worker = Worker(store, runner(0.1, ran), poll_ms=100)
    with anyio.move_on_after(1):
        await worker.serve()
    assert ran == [] and await store.redis.xlen(store.keys.job_stream()) == 0
    assert (await store.request_cancel(job.id)).status == "cancelled"  # idempotent
    assert (await store.job_stats()).jobs == {(job.strategy, "cancelled"): 1.0}  # counted once


async def test_events_are_kept_in_order(store: Store) -> None:
    job = await store.create_job(JobRecord(question="q"))
    for depth in range(3):
        await store.append_event(job.id, {"type": "depth", "depth": depth})
    events = await store.read_events(job.id)
    assert [e["depth"] for _, e in events] == [0, 1, 2]
    assert await store.read_events(job.id, after=events[-1][0]) == []


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
async def test_finished_jobs_cannot_be_claimed_again(store: Store, status: str) -> None:
    job = await store.create_job(JobRecord(question="q", status=status))
    assert await store.claim_job(job.id, "anyone") is None


async def test_a_job_that_keeps_killing_its_workers_is_failed_after_its_attempts(store: Store) -> None:
    queue, ran = JobQueue(store), []
    await queue.ensure_group()
    job = await submit(store, queue)
    for ghost in ("ghost-1", "ghost-2", "ghost-3"):  # each takes the job and dies without a word
        assert await store.claim_job(job.id, ghost, max_attempts=3) is not None
    worker = Worker(store, runner(0.1, ran), stale_after_s=0.2, max_attempts=3, poll_ms=100)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.serve)
        failed = await wait_for_status(store, job.id, {"failed"})
        group.cancel_scope.cancel()
    assert ran == [] and failed.attempts == 3 and failed.error["code"] == "job_crashed"
    assert (await store.job_stats()).jobs == {(job.strategy, "failed"): 1.0}
    assert await store.redis.xlen(store.keys.job_stream()) == 0  # acknowledged: not taken over forever


async def test_an_ended_job_is_kept_for_the_retention_time_only(redis_connection) -> None:
    store = Store(redis_connection, namespace="retention-test", retention_s=60)
    job = await store.create_job(JobRecord(question="q"))
    await store.append_event(job.id, {"type": "started"})
    assert await store.redis.ttl(store.keys.job(job.id)) == -1  # a queued job never expires
    claimed = await store.claim_job(job.id, "worker")
    claimed.status = "succeeded"
    assert await store.finish_job(claimed, "worker")
    for key in (store.keys.job(job.id), store.keys.job_events(job.id)):
        assert 0 < await store.redis.ttl(key) <= 60
    old = await store.create_job(JobRecord(question="old", created_at=1.0))
    await store.request_cancel(old.id)  # ending any job drops index entries older than the retention
    assert await store.redis.zscore(store.keys.jobs_by_time(), old.id) is None

"""Jobs in Redis: a stream with one consumer group, and the workers that run them.

A job id is added to the stream in the same step that stores the job (``Store.create_job``). Workers read it with
``XREADGROUP`` and acknowledge it only when the job's outcome is stored, so a job is
never lost. A worker refreshes its claim on every running job (``XCLAIM ... JUSTID``)
while it works; a job whose claim has not been refreshed for ``stale_after_s`` belongs to
a dead worker and is taken over (``XAUTOCLAIM``). The outcome is written with a
compare-and-set on the job's owner, so even a slow worker that was presumed dead cannot
finish a job a second time.

Redis going away does not stop a worker: it backs off (up to ``MAX_BACKOFF_S``) and carries
on when Redis answers again. A running job keeps running through an outage; its outcome is
stored once Redis is back (within ``OUTCOME_PATIENCE_S``; after that the job is left to be
taken over, and run again, by whichever worker finds it stale).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from redis.exceptions import ResponseError

from orchestrator.core.admission import StreamSlots
from orchestrator.core.store import JobRecord, Store
from orchestrator.core.store.records import STORE_ERRORS
from service.outcome import Cancelled, decide

log = logging.getLogger(__name__)

GROUP = "workers"
MAX_BACKOFF_S = 5.0
OUTCOME_PATIENCE_S = 300.0
HEARTBEAT_S = 5.0  # a worker touches its heartbeat file this often (health checks allow a few missed)


def backoff_s(failures: int) -> float:
    """The wait after ``failures`` store errors in a row: doubling from 0.5 s, at most ``MAX_BACKOFF_S``."""
    return min(0.25 * 2**failures, MAX_BACKOFF_S)


def worker_name() -> str:
    """A unique consumer name: host, process and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobQueue:
    """The job stream and its consumer group."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self.stream = store.keys.job_stream()

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) once; later calls are no-ops."""
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def next(self, consumer: str, *, stale_after_s: float, block_ms: int) -> tuple[str, str] | None:
        """The next (message id, job id) for ``consumer``: a dead worker's job first, else a new one."""
        reply = await self.redis.xautoclaim(
            self.stream, GROUP, consumer, min_idle_time=int(stale_after_s * 1000), start_id="0-0", count=1
        )
        reclaimed = reply[1]  # Redis 6.2 answers [cursor, entries]; 7+ adds deleted ids
        if reclaimed:
            message_id, fields = reclaimed[0]
            log.warning("taking over job %s from a worker that stopped answering", fields["job"])
            return message_id, fields["job"]
        answer = await self.redis.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=1, block=block_ms)
        for _, entries in answer or []:
            for message_id, fields in entries:
                return message_id, fields["job"]
        return None

    async def keep_claimed(self, consumer: str, message_id: str) -> None:
        """Refresh this worker's claim so nobody takes the job over while it runs."""
        await self.redis.xclaim(self.stream, GROUP, consumer, min_idle_time=0, message_ids=[message_id], justid=True)

    async def ack(self, message_id: str) -> None:
        """The job's outcome is stored: remove it from the stream."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, message_id)
            pipe.xdel(self.stream, message_id)
            await pipe.execute()


JobRunner = Callable[[JobRecord], Awaitable[JobRecord]]
"""Runs a claimed job, filling in its outcome in place (``Runtime.execute``)."""


JobWeigher = Callable[[JobRecord], int]
"""The sequences a job decodes at once (``service.runtime.job_streams``): what it takes of the batch."""


class Worker:
    """Takes jobs from the queue and runs them, admitted by the sequences they decode at once.

    Up to ``concurrency`` jobs are claimed at a time; a claimed job starts once its sequences
    (``weigh``) fit in ``streams`` (``orchestrator.core.admission``), so many narrow jobs or a
    few wide ones fill the engine's batch alike.
    """

    def __init__(
        self,
        store: Store,
        run_job: JobRunner,
        *,
        name: str | None = None,
        concurrency: int = 64,
        streams: int = 128,
        weigh: JobWeigher = lambda job: 1,
        stale_after_s: float = 30.0,
        max_attempts: int = 3,
        poll_ms: int = 1000,
        heartbeat_file: Path | None = None,
    ) -> None:
        self.store = store
        self.queue = JobQueue(store)
        self.run_job = run_job
        self.name = name or worker_name()
        self.slots = anyio.Semaphore(concurrency)
        self.streams = StreamSlots(streams)
        self.weigh = weigh
        self.stale_after_s = stale_after_s
        self.max_attempts = max_attempts
        self.poll_ms = poll_ms
        self.heartbeat_file = heartbeat_file
        self.finished = 0
        self._failures = 0  # store errors in a row: the backoff grows with them

    async def serve(self) -> None:
        """Run until cancelled; jobs in flight at cancellation stay claimed and are taken over later."""
        while True:  # a worker started while Redis is away waits for it
            try:
                await self.queue.ensure_group()
                break
            except STORE_ERRORS as error:
                await self._back_off(error)
        self._failures = 0
        log.info("worker %s ready", self.name)
        async with anyio.create_task_group() as group:
            if self.heartbeat_file is not None:
                group.start_soon(self._beat, self.heartbeat_file)
            while True:
                await self.slots.acquire()
                try:
                    claimed = await self.queue.next(self.name, stale_after_s=self.stale_after_s, block_ms=self.poll_ms)
                except STORE_ERRORS as error:
                    self.slots.release()
                    await self._back_off(error)
                    continue
                except BaseException:
                    self.slots.release()
                    raise
                self._failures = 0
                if claimed is None:
                    self.slots.release()
                    continue
                group.start_soon(self._handle, *claimed)

    async def _beat(self, path: Path) -> None:
        """Touch ``path`` every ``HEARTBEAT_S`` while Redis answers: a health check that finds it
        fresh knows this worker's event loop runs and its store is reachable (not just that the
        process exists)."""
        while True:
            try:
                await self.store.ping()
                await anyio.Path(path).touch()
            except STORE_ERRORS as error:  # Redis away (or the file unwritable): stale, and reported
                log.warning("worker %s: no heartbeat (%s)", self.name, error)
            await anyio.sleep(HEARTBEAT_S)

    async def _back_off(self, error: BaseException) -> None:
        self._failures += 1
        if self._failures == 1:
            log.warning("worker %s: Redis does not answer (%s); retrying with backoff", self.name, error)
        await anyio.sleep(backoff_s(self._failures))

    async def _handle(self, message_id: str, job_id: str) -> None:
        try:
            try:
                job = await self.store.claim_job(job_id, self.name, self.max_attempts)
            except STORE_ERRORS:  # still pending in the stream: taken over once stale, here or elsewhere
                return
            if job is None:  # finished or cancelled already: the queue entry is stale
                await self._store_outcome(None, message_id)
                return
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep_claimed, message_id)  # also while it waits for room in the batch
                group.start_soon(self._watch_for_cancel, job_id, group.cancel_scope)
                async with self.streams.hold(self.weigh(job)):
                    await self.run_job(job)  # fills in the job's outcome; marks it cancelled if cancelled
                group.cancel_scope.cancel()
            if job.status == "running":  # cancelled before its run began: decided like any ending
                decide(job.kind, Cancelled(), job.usage).apply(job)
            await self._store_outcome(job, message_id)
        finally:
            self.slots.release()

    async def _store_outcome(self, job: JobRecord | None, message_id: str) -> None:
        """Store the outcome (if any) and acknowledge the message, waiting out a Redis outage."""
        failures = 0
        with anyio.move_on_after(OUTCOME_PATIENCE_S, shield=True):
            while True:
                try:
                    if job is not None and await self.store.finish_job(job, self.name):
                        self.finished += 1
                    job = None  # stored (or someone else's): only the acknowledgement is left
                    await self.queue.ack(message_id)
                    return
                except STORE_ERRORS as error:
                    failures += 1
                    if failures == 1:
                        log.warning("worker %s: cannot store a job's outcome yet (%s); retrying", self.name, error)
                    await anyio.sleep(backoff_s(failures))

    async def _keep_claimed(self, message_id: str) -> None:
        while True:
            await anyio.sleep(self.stale_after_s / 3)
            try:
                await self.queue.keep_claimed(self.name, message_id)
            except STORE_ERRORS:
                pass  # Redis is away; the job runs on, and the claim is refreshed when it is back

    async def _watch_for_cancel(self, job_id: str, scope: anyio.CancelScope) -> None:
        """Cancel the job's work (and so its engine requests) once a client asks to."""
        while True:
            await anyio.sleep(0.25)
            try:
                requested = await self.store.cancel_requested(job_id)
            except STORE_ERRORS:
                continue  # Redis is away: nobody can ask to cancel meanwhile
            if requested:
                log.info("cancelling job %s", job_id)
                scope.cancel()
                return

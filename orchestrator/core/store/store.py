"""The typed store: what the service keeps in Redis, behind one class.

Records are JSON documents validated by pydantic on the way in and out. Writes that
touch several keys go through one transactional pipeline, so a reader never sees a
job in the time index without its record.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field
from redis.exceptions import RedisError, WatchError

from orchestrator.core.budget import Budget, Usage, add_usage
from orchestrator.core.errors import InvalidRequestError, NotFoundError, StoreUnavailableError
from orchestrator.core.store.connection import RedisConnection
from orchestrator.core.store.contexts import ContextRecord
from orchestrator.core.store.jobstats import JobStats, job_increments
from orchestrator.core.store.keys import Keys

SCHEMA_VERSION = "1"
Record = TypeVar("Record", bound=BaseModel)
JobStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
MemoryWait = Literal["use_if_ready", "wait"]  # a question over a context whose memory is not ready yet
IDEMPOTENCY_TTL_S = 24 * 3600
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
EVENTS_KEPT = 2000  # per job: enough for a deep search's every depth, bounded for Redis' sake
EVENTS_TTL_S = 24 * 3600


def _claim(job: JobRecord, owner: str) -> JobRecord | None:
    if job.status in TERMINAL:
        return None
    if job.status == "cancelling":  # its worker died before it could cancel: finish the cancel
        job.status, job.updated_at = "cancelled", time.time()
        return job
    job.status, job.owner, job.attempts, job.updated_at = "running", owner, job.attempts + 1, time.time()
    return job


def hash_api_key(plaintext: str) -> str:
    """What the store keeps instead of the key."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


class ApiKey(BaseModel):
    """An API key's stored record (its hash is the Redis field name)."""

    id: str = Field(default_factory=lambda: f"key-{uuid.uuid4().hex[:12]}")
    name: str
    quota_tokens: int | None = Field(None, ge=1, description="compute tokens the key may spend; None: unlimited")
    created_at: float = Field(default_factory=time.time)


def new_job_id() -> str:
    """A fresh job id (sortable by nothing; the time index orders jobs)."""
    return f"job-{uuid.uuid4().hex}"


class JobRecord(BaseModel):
    """One reasoning request and everything known about it."""

    id: str = Field(default_factory=new_job_id)
    status: JobStatus = "queued"
    question: str
    strategy: str = "direct"
    params: dict[str, Any] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)
    answer: str | None = None
    output: str | None = None
    best_so_far: bool = Field(False, description="the budget ran out; this is the best answer found by then")
    usage: Usage = Field(default_factory=Usage)
    trace: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, str] | None = None
    owner: str | None = Field(None, description="the worker running (or that ran) the job")
    api_key_id: str | None = Field(None, description="the API key that submitted the job")
    kind: Literal["reason", "precompute"] = Field("reason", description="precompute: a context's sleep phase")
    context_id: str | None = Field(None, description="the context the question is asked over")
    context_memory: MemoryWait = "use_if_ready"
    attempts: int = 0
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


class Store:
    """Jobs and service state in Redis; every key comes from ``Keys``."""

    def __init__(self, connection: RedisConnection, namespace: str = "ttc") -> None:
        self.connection = connection
        self.redis = connection.client
        self.keys = Keys(namespace)

    async def ping(self) -> None:
        """Raise ``StoreUnavailableError`` when Redis does not answer."""
        try:
            await self.redis.ping()
        except (RedisError, OSError) as error:
            raise StoreUnavailableError(f"Redis does not answer ({error})") from None

    async def create_job(self, job: JobRecord) -> JobRecord:
        """Store a new job; refuses to overwrite an existing id."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.job(job.id), job.model_dump_json(), nx=True)
            pipe.zadd(self.keys.jobs_by_time(), {job.id: job.created_at})
            pipe.set(self.keys.schema_version(), SCHEMA_VERSION)
            created, *_ = await self._execute(pipe)
        if not created:
            raise InvalidRequestError(f"a job with id {job.id} already exists")
        return job

    async def idempotent_target(self, scope: str, key: str) -> str | None:
        """The id an idempotency key already names (a job, a context), if any."""
        return await self.redis.get(self.keys.idempotency(scope, key))

    async def claim_idempotency(self, scope: str, key: str, target: str) -> str:
        """Let ``key`` name ``target`` unless it already names something (for 24 h); returns what it names.

        Two concurrent requests with one key both create their object; the first to claim the
        key wins and the other sees the winner's id (and discards its own).
        """
        redis_key = self.keys.idempotency(scope, key)
        if await self.redis.set(redis_key, target, nx=True, ex=IDEMPOTENCY_TTL_S):
            return target
        return await self.redis.get(redis_key) or target  # the winner's (it expired meanwhile: ours)

    async def get_job(self, job_id: str) -> JobRecord:
        """The job's record, or ``NotFoundError``."""
        raw = await self.redis.get(self._job_key(job_id))
        if raw is None:
            raise NotFoundError(f"job {job_id} does not exist")
        return JobRecord.model_validate_json(raw)

    async def claim_job(self, job_id: str, owner: str) -> JobRecord | None:
        """Mark a queued (or orphaned running) job as running under ``owner``.

        Returns ``None`` when the job is already finished or cancelled: its queue entry is stale.
        """
        job = await self._transform(job_id, lambda job: _claim(job, owner))
        if job is not None and job.status == "cancelled":  # the claim finished an orphaned cancel
            await self._count_finished(job)
            await self._end_cancelled_precompute(job)
        return job if job is not None and job.owner == owner and job.status == "running" else None

    async def finish_job(self, job: JobRecord, owner: str) -> bool:
        """Store a finished job's outcome if ``owner`` still owns it; exactly one finisher wins."""

        def finish(current: JobRecord) -> JobRecord | None:
            if current.owner != owner or current.status in TERMINAL:
                return None
            job.updated_at = time.time()
            return job

        finished = await self._transform(job.id, finish) is not None
        if finished:  # once per job, since only one finisher gets here
            if job.api_key_id:
                await self.redis.hincrby(self.keys.api_key_usage(), job.api_key_id, job.usage.compute_tokens)
            await self._count_finished(job)
            result = {"type": "result", "status": job.status, "answer": job.answer, "best_so_far": job.best_so_far}
            await self.append_event(job.id, {**result, "usage": job.usage.model_dump()})
        return finished

    async def request_cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: a queued one at once, a running one through its worker."""

        def cancel(current: JobRecord) -> JobRecord | None:
            if current.status == "queued":
                current.status = "cancelled"
            elif current.status == "running":
                current.status = "cancelling"
            else:
                return None
            current.updated_at = time.time()
            return current

        changed = await self._transform(job_id, cancel)
        if changed is not None and changed.status == "cancelling":
            await self.redis.set(self.keys.job_cancel(job_id), "1", ex=EVENTS_TTL_S)
        elif changed is not None:  # cancelled before any worker took it: it ends here
            await self._count_finished(changed)
            await self._end_cancelled_precompute(changed)
        return await self.get_job(job_id)

    async def _end_cancelled_precompute(self, job: JobRecord) -> None:
        if job.kind == "precompute" and job.context_id:
            cancelled = {"type": "cancelled", "code": "cancelled", "message": "the precompute was cancelled"}
            await self.end_precompute(job.context_id, job.id, None, job.usage, cancelled)

    async def job_stats(self) -> JobStats:
        """Counters over every job finished so far, by whichever process finished it."""
        return JobStats.parse(await self.redis.hgetall(self.keys.job_stats()))

    async def _count_finished(self, job: JobRecord) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for name, amount in job_increments(job.strategy, job.status, job.usage).items():
                pipe.hincrbyfloat(self.keys.job_stats(), name, amount)
            await self._execute(pipe)

    async def cancel_requested(self, job_id: str) -> bool:
        """Whether a client asked a running job to stop (one EXISTS: cheap enough to poll)."""
        return bool(await self.redis.exists(self.keys.job_cancel(job_id)))

    async def _transform(self, job_id: str, change) -> JobRecord | None:
        """Optimistic read-modify-write of one job (WATCH/MULTI); ``change`` returns None to skip."""
        return await self._transform_record(self._job_key(job_id), JobRecord, change, f"job {job_id}")

    async def _transform_record(self, key: str, model: type[Record], change, name: str) -> Record | None:
        """Optimistic read-modify-write of one JSON record; ``change`` returns None to skip."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise NotFoundError(f"{name} does not exist")
                    changed = change(model.model_validate_json(raw))
                    if changed is None:
                        await pipe.unwatch()
                        return None
                    pipe.multi()
                    pipe.set(key, changed.model_dump_json())
                    await pipe.execute()
                    return changed
                except WatchError:
                    continue  # someone wrote the record meanwhile: read it again

    # --- sleep-time contexts ----------------------------------------------------------------

    async def create_context_with_job(self, context: ContextRecord, job: JobRecord) -> None:
        """Store a context and its precompute job together (one transaction), refusing to overwrite."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.context(context.id), context.model_dump_json(), nx=True)
            pipe.set(self.keys.job(job.id), job.model_dump_json(), nx=True)
            pipe.zadd(self.keys.jobs_by_time(), {job.id: job.created_at})
            pipe.set(self.keys.schema_version(), SCHEMA_VERSION)
            context_created, job_created, *_ = await self._execute(pipe)
        if not (context_created and job_created):
            raise InvalidRequestError(f"context {context.id} or job {job.id} already exists")

    async def get_context(self, context_id: str) -> ContextRecord:
        """The context's record, or ``NotFoundError``."""
        raw = await self.redis.get(self._context_key(context_id))
        if raw is None:
            raise NotFoundError(f"context {context_id} does not exist: create it with POST /v1/contexts")
        return ContextRecord.model_validate_json(raw)

    async def mark_context_computing(self, context_id: str) -> None:
        def computing(record: ContextRecord) -> ContextRecord | None:
            if record.status != "queued":
                return None
            record.status, record.updated_at = "computing", time.time()
            return record

        await self._transform_record(self._context_key(context_id), ContextRecord, computing, f"context {context_id}")

    async def end_precompute(
        self, context_id: str, job_id: str, memory: str | None, usage: Usage, error: dict[str, str] | None
    ) -> ContextRecord:
        """Apply a finished precompute once: its cost, and its memory (a new version) or its error."""

        def apply(record: ContextRecord) -> ContextRecord:
            record.sleep_usage = add_usage(record.sleep_usage, usage)
            if error is None:
                record.memory, record.memory_version, record.status = memory or "", record.memory_version + 1, "ready"
            else:
                record.status, record.error = ("ready" if record.memory_version else "failed"), error
            record.updated_at = time.time()
            return record

        def history(pipe: Any, record: ContextRecord) -> None:
            if error is None:
                entry = {"memory": memory or "", "usage": usage.model_dump(), "job_id": job_id, "at": time.time()}
                pipe.hset(self.keys.context_memories(context_id), str(record.memory_version), json.dumps(entry))

        return await self._apply_once(context_id, job_id, apply, history)

    async def count_query(self, context_id: str, job_id: str) -> ContextRecord:
        """Count one question answered with the context's memory (once per job)."""

        def count(record: ContextRecord) -> ContextRecord:
            record.queries += 1
            return record

        return await self._apply_once(context_id, job_id, count)

    async def _apply_once(self, context_id: str, job_id: str, change, also=None) -> ContextRecord:
        """Change the context for ``job_id`` unless that job's change is already applied (atomic)."""
        key, applied = self._context_key(context_id), self.keys.context_jobs_applied(context_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key, applied)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise NotFoundError(f"context {context_id} does not exist")
                    record = ContextRecord.model_validate_json(raw)
                    if await pipe.sismember(applied, job_id):
                        await pipe.unwatch()
                        return record  # a retried or taken-over job: already counted
                    record = change(record)
                    pipe.multi()
                    pipe.set(key, record.model_dump_json())
                    pipe.sadd(applied, job_id)
                    if also is not None:
                        also(pipe, record)
                    await pipe.execute()
                    return record
                except WatchError:
                    continue

    def _context_key(self, context_id: str) -> str:
        try:
            return self.keys.context(context_id)
        except ValueError as error:
            raise NotFoundError(f"context {context_id!r} does not exist ({error})") from None

    async def append_event(self, job_id: str, event: dict[str, Any]) -> None:
        """Add a progress event to the job's event stream (bounded, expiring)."""
        key = self.keys.job_events(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, {"event": json.dumps(event)}, maxlen=EVENTS_KEPT, approximate=True)
            pipe.expire(key, EVENTS_TTL_S)
            await self._execute(pipe)

    async def read_events(
        self, job_id: str, after: str = "0-0", block_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after the id ``after``, waiting up to ``block_ms`` for the first one."""
        self._job_key(job_id)  # validates the id
        answer = await self.redis.xread({self.keys.job_events(job_id): after}, block=block_ms, count=100)
        return [(entry_id, json.loads(fields["event"])) for _, entries in answer for entry_id, fields in entries]

    async def create_api_key(self, name: str, quota_tokens: int | None = None) -> tuple[str, ApiKey]:
        """A new API key: returns the plaintext (shown once) and its stored record."""
        plaintext = f"ttc-{secrets.token_urlsafe(32)}"
        record = ApiKey(name=name, quota_tokens=quota_tokens)
        await self.redis.hset(self.keys.api_keys(), hash_api_key(plaintext), record.model_dump_json())
        return plaintext, record

    async def has_api_keys(self) -> bool:
        return bool(await self.redis.hlen(self.keys.api_keys()))

    async def find_api_key(self, plaintext: str) -> ApiKey | None:
        raw = await self.redis.hget(self.keys.api_keys(), hash_api_key(plaintext))
        return ApiKey.model_validate_json(raw) if raw else None

    async def list_api_keys(self) -> list[tuple[ApiKey, int]]:
        """Every key with the tokens it has spent."""
        records = [ApiKey.model_validate_json(raw) for raw in (await self.redis.hgetall(self.keys.api_keys())).values()]
        used = await self.redis.hgetall(self.keys.api_key_usage())
        return [(record, int(used.get(record.id, 0))) for record in records]

    async def revoke_api_key(self, key_id: str) -> bool:
        for key_hash, raw in (await self.redis.hgetall(self.keys.api_keys())).items():
            if ApiKey.model_validate_json(raw).id == key_id:
                await self.redis.hdel(self.keys.api_keys(), key_hash)
                return True
        return False

    async def api_key_tokens_used(self, key_id: str) -> int:
        return int(await self.redis.hget(self.keys.api_key_usage(), key_id) or 0)

    def _job_key(self, job_id: str) -> str:
        """The key of a job named by a client; a malformed id names no job."""
        try:
            return self.keys.job(job_id)
        except ValueError as error:
            raise NotFoundError(f"job {job_id!r} does not exist ({error})") from None

    async def _execute(self, pipe: Any) -> list[Any]:
        try:
            return await pipe.execute()
        except (RedisError, OSError) as error:
            raise StoreUnavailableError(f"Redis write failed ({error})") from None

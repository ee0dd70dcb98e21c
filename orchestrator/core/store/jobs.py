"""Jobs in Redis: the record, creating one (with its quota reservation and queue entry in one
step), claiming, finishing and cancelling it, listing a tenant's jobs, and its event stream."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from orchestrator.core.budget import Budget, Usage
from orchestrator.core.chat import ChatOptions
from orchestrator.core.errors import (
    InvalidRequestError,
    JobCrashedError,
    JobExistsError,
    NotFoundError,
    QuotaExceededError,
    StoreUnavailableError,
)
from orchestrator.core.store.api_keys import ApiKeyStore
from orchestrator.core.store.jobstats import JobStats, job_increments
from orchestrator.core.store.records import AlsoWrite, Change
from orchestrator.core.store.scripts import CREATE_RECORDS

SCHEMA_VERSION = "1"
JobStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
MemoryWait = Literal["use_if_ready", "wait"]  # a question over a context whose memory is not ready yet
IDEMPOTENCY_TTL_S = 24 * 3600
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
EVENTS_KEPT = 2000  # per job: enough for a deep search's every depth, bounded for Redis' sake


JOB_ID = re.compile(r"^job-[0-9a-f]{32}$")  # exactly what new_job_id mints


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
    cut_off: bool = Field(False, description="the answer's text stopped at a length or budget limit mid-way")
    usage: Usage = Field(default_factory=Usage)
    trace: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, str] | None = None
    owner: str | None = Field(None, description="the worker running (or that ran) the job")
    api_key_id: str | None = Field(None, description="the API key that submitted the job (its owner)")
    quota_reserved: int = Field(0, description="tokens reserved against the key's quota until the job ends")
    kind: Literal["reason", "precompute"] = Field("reason", description="precompute: a context's sleep phase")
    context_id: str | None = Field(None, description="the context the question is asked over")
    context_memory: MemoryWait = "use_if_ready"
    chat: ChatOptions | None = Field(None, description="a chat request's earlier turns and answer shape")
    attempts: int = 0
    retry_engine_death: bool = Field(True, description="run once more on the rebuilt engine if the engine dies")
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


def _claim(job: JobRecord, owner: str, max_attempts: int) -> JobRecord | None:
    if job.status in TERMINAL:
        return None
    if job.status == "cancelling":  # its worker died before it could cancel: finish the cancel
        job.status, job.updated_at = "cancelled", time.time()
        return job
    if job.attempts >= max_attempts:  # every worker that ran it died: running it again would kill another
        crashed = JobCrashedError(
            f"the job was started {job.attempts} times and its worker stopped each time before it ended; "
            "it is not retried again (a question or params that crash the service: please report it)"
        )
        job.status, job.error, job.updated_at = "failed", crashed.to_dict(), time.time()
        return job
    job.status, job.owner, job.attempts, job.updated_at = "running", owner, job.attempts + 1, time.time()
    return job


class JobStore(ApiKeyStore):
    """Jobs, their idempotency keys, their events and the counters over finished ones."""

    async def create_job(self, job: JobRecord, quota: int | None = None, *, enqueue: bool = False) -> JobRecord:
        """Store a new job; refuses to overwrite an existing id (``JobExistsError``).

        With ``quota`` (its API key's), the job's token budget is reserved against it in the
        same step, or ``QuotaExceededError`` if it does not fit beside the key's other jobs.
        With ``enqueue`` the job is queued for the workers in that same step.
        """
        await self._create({self._job_key(job.id): job}, job, quota, enqueue)
        return job

    async def _create(self, records: dict[str, BaseModel], job: JobRecord, quota: int | None, enqueue: bool) -> None:
        """Create ``records`` (one of them ``job``) atomically, reserving ``job``'s budget against ``quota``
        and queueing it if ``enqueue``."""
        keys, arguments = self._creation(records, job, quota, enqueue, replaced=0)
        try:
            created = await self.redis.eval(CREATE_RECORDS, len(keys), *keys, *arguments)
        except (RedisError, OSError) as error:
            raise StoreUnavailableError(f"Redis write failed ({error})") from None
        await self._check_created(created, job, quota)

    def _creation(
        self, records: dict[str, BaseModel], job: JobRecord, quota: int | None, enqueue: bool, replaced: int
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of ``CREATE_RECORDS`` (its first ``replaced`` records may exist)."""
        if quota is not None:
            if job.budget.max_tokens is None:
                raise InvalidRequestError("this API key has a token quota: set budget.max_tokens")
            job.quota_reserved = job.budget.max_tokens
        keys = [self.keys.api_key_usage(), self.keys.api_key_reserved(), self.keys.jobs_by_time()]
        keys += [self.keys.schema_version(), self.keys.job_stream(), self._jobs_of(job.api_key_id), *records]
        arguments: list[Any] = [job.api_key_id or "", job.quota_reserved, -1 if quota is None else quota, job.id]
        arguments += [job.created_at, SCHEMA_VERSION, "1" if enqueue else "0", replaced]
        arguments += [record.model_dump_json() for record in records.values()]
        return keys, arguments

    async def _check_created(self, created: int, job: JobRecord, quota: int | None) -> None:
        """Turn ``CREATE_RECORDS``' answer into the error it means, if any."""
        if created == 0:
            raise JobExistsError(f"job {job.id} (or its context) already exists")
        if created == -1:
            used = await self.api_key_tokens_committed(job.api_key_id or "")
            raise QuotaExceededError(
                f"the job's budget of {job.quota_reserved} tokens does not fit in this API key's quota "
                f"({used} of {quota} tokens spent or reserved by its jobs)"
            )

    async def claim_idempotency(self, scope: str, tenant: str | None, key: str, target: str) -> str:
        """Let ``key`` name ``target`` unless it already names something (for 24 h); returns what it names.

        Two concurrent requests with one key both create their object; the first to claim the
        key wins and the other sees the winner's id (and discards its own).
        """
        redis_key = self.keys.idempotency(scope, tenant or "open", key)
        if await self.redis.set(redis_key, target, nx=True, ex=IDEMPOTENCY_TTL_S):
            return target
        return await self.redis.get(redis_key) or target  # the winner's (it expired meanwhile: ours)

    async def get_job(self, job_id: str) -> JobRecord:
        """The job's record, or ``NotFoundError``."""
        raw = await self.redis.get(self._job_key(job_id))
        if raw is None:
            raise NotFoundError(f"job {job_id} does not exist")
        return JobRecord.model_validate_json(raw)

    async def get_owned_job(self, job_id: str, tenant: str | None) -> JobRecord:
        """The job if ``tenant`` (an API key id; None without keys) owns it; another tenant's job is
        ``NotFoundError`` exactly as a missing one, so its existence is not confirmed."""
        job = await self.get_job(job_id)
        if job.api_key_id != tenant:
            raise NotFoundError(f"job {job_id} does not exist")
        return job

    async def claim_job(self, job_id: str, owner: str, max_attempts: int = 3) -> JobRecord | None:
        """Mark a queued (or orphaned running) job as running under ``owner``.

        Returns ``None`` when the job is already finished or cancelled: its queue entry is stale.
        A job already started ``max_attempts`` times is failed instead (its workers kept dying).
        """
        job = await self._transform(job_id, lambda job: _claim(job, owner, max_attempts), self._end_if_ended)
        if job is not None and job.status in TERMINAL:  # the claim ended an orphaned job
            await self._ended_unsettled(job)
        return job if job is not None and job.owner == owner and job.status == "running" else None

    async def finish_job(self, job: JobRecord, owner: str) -> bool:
        """Store a finished job's outcome if ``owner`` still owns it; exactly one finisher wins.

        The outcome, the counters, the quota settlement and the result event are one transaction:
        a retry after Redis failed mid-way finds either all of them or none.
        """

        def finish(current: JobRecord) -> JobRecord | None:
            if current.owner != owner or current.status in TERMINAL:
                return None
            job.updated_at = time.time()
            return job

        return await self._transform(job.id, finish, self._end_if_ended) is not None

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

        changed = await self._transform(job_id, cancel, self._end_if_ended)
        if changed is not None and changed.status == "cancelling":
            await self.redis.set(self.keys.job_cancel(job_id), "1", ex=self.retention_s)
        elif changed is not None:  # cancelled before any worker took it: it ends here
            await self._ended_unsettled(changed)
        return await self.get_job(job_id)

    def _end_if_ended(self, pipe: Any, job: JobRecord) -> None:
        """In the transaction that makes a job terminal (so once per job): count it, settle its key's
        quota from reserved to spent, tell its watchers, and start its retention clock."""
        if job.status not in TERMINAL:
            return
        for name, amount in job_increments(job.strategy, job.status, job.usage).items():
            pipe.hincrbyfloat(self.keys.job_stats(), name, amount)
        if job.api_key_id:
            pipe.hincrby(self.keys.api_key_usage(), job.api_key_id, job.usage.compute_tokens)
            if job.quota_reserved:
                pipe.hincrby(self.keys.api_key_reserved(), job.api_key_id, -job.quota_reserved)
        result = {"type": "result", "status": job.status, "answer": job.answer, "best_so_far": job.best_so_far}
        result |= {"cut_off": job.cut_off, "error": job.error, "usage": job.usage.model_dump()}
        pipe.xadd(self.keys.job_events(job.id), {"event": json.dumps(result)}, maxlen=EVENTS_KEPT, approximate=True)
        for key in (self.keys.job(job.id), self.keys.job_events(job.id), self.keys.job_cancel(job.id)):
            pipe.expire(key, self.retention_s)
        expired = time.time() - self.retention_s
        pipe.zremrangebyscore(self.keys.jobs_by_time(), "-inf", expired)
        pipe.zremrangebyscore(self._jobs_of(job.api_key_id), "-inf", expired)

    def _jobs_of(self, tenant: str | None) -> str:
        return self.keys.jobs_of(tenant or "open")

    async def list_jobs(self, tenant: str | None, limit: int, before: float | None = None) -> list[JobRecord]:
        """The tenant's newest ``limit`` jobs created before ``before`` (a timestamp; None: now), newest
        first. Pass the last one's ``created_at`` as ``before`` for the next page."""
        newest = f"({before!r}" if before is not None else "+inf"
        ids = await self.redis.zrevrangebyscore(self._jobs_of(tenant), newest, "-inf", start=0, num=limit)
        if not ids:
            return []
        raw = await self.redis.mget([self._job_key(job_id) for job_id in ids])
        return [JobRecord.model_validate_json(record) for record in raw if record is not None]

    async def _ended_unsettled(self, job: JobRecord) -> None:
        """A job that ended without its worker storing the outcome (cancelled while queued, crashed):
        a hook for what else must learn so (``ContextStore``: a precompute's context)."""

    async def job_stats(self) -> JobStats:
        """Counters over every job finished so far, by whichever process finished it."""
        return JobStats.parse(await self.redis.hgetall(self.keys.job_stats()))

    async def cancel_requested(self, job_id: str) -> bool:
        """Whether a client asked a running job to stop (one EXISTS: cheap enough to poll)."""
        return bool(await self.redis.exists(self.keys.job_cancel(job_id)))

    async def _transform(
        self, job_id: str, change: Change[JobRecord], also: AlsoWrite[JobRecord] | None = None
    ) -> JobRecord | None:
        """Optimistic read-modify-write of one job; ``change`` returns None to skip."""
        return await self.transform(self._job_key(job_id), JobRecord, change, f"job {job_id}", also)

    async def append_event(self, job_id: str, event: dict[str, Any]) -> None:
        """Add a progress event to the job's event stream (bounded, expiring)."""
        key = self.keys.job_events(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, {"event": json.dumps(event)}, maxlen=EVENTS_KEPT, approximate=True)
            pipe.expire(key, self.retention_s)
            await self._execute(pipe)

    async def read_events(
        self, job_id: str, after: str = "0-0", block_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after the id ``after``, waiting up to ``block_ms`` for the first one."""
        self._job_key(job_id)  # validates the id
        answer = await self.redis.xread({self.keys.job_events(job_id): after}, block=block_ms, count=100)
        return [(entry_id, json.loads(fields["event"])) for _, entries in answer for entry_id, fields in entries]

    def _job_key(self, job_id: str) -> str:
        """The key of a job named by a client; an id of any other shape (``job-…:events``) names no job."""
        if not JOB_ID.match(job_id):
            raise NotFoundError(f"job {job_id!r} does not exist (job ids look like job-<32 hex digits>)")
        return self.keys.job(job_id)

"""The typed store: what the service keeps in Redis, behind one class.

Records are JSON documents validated by pydantic on the way in and out. Writes that
touch several keys go through one transactional pipeline, so a reader never sees a
job in the time index without its record.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from orchestrator.budget import Budget, Usage
from orchestrator.errors import InvalidRequestError, NotFoundError, StoreUnavailableError
from orchestrator.store.connection import RedisConnection
from orchestrator.store.keys import Keys

SCHEMA_VERSION = "1"
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


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

    async def update_job(self, job: JobRecord) -> JobRecord:
        """Replace a job's record with its new state; the job must exist."""
        job.updated_at = time.time()
        stored = await self.redis.set(self.keys.job(job.id), job.model_dump_json(), xx=True)
        if not stored:
            raise NotFoundError(f"job {job.id} does not exist")
        return job

    async def get_job(self, job_id: str) -> JobRecord:
        """The job's record, or ``NotFoundError``."""
        try:
            raw = await self.redis.get(self.keys.job(job_id))
        except ValueError as error:  # a malformed id cannot name a job
            raise NotFoundError(str(error)) from None
        if raw is None:
            raise NotFoundError(f"job {job_id} does not exist")
        return JobRecord.model_validate_json(raw)

    async def recent_job_ids(self, limit: int = 20) -> list[str]:
        """Ids of the newest jobs, newest first."""
        return list(await self.redis.zrevrange(self.keys.jobs_by_time(), 0, limit - 1))

    async def _execute(self, pipe: Any) -> list[Any]:
        try:
            return await pipe.execute()
        except (RedisError, OSError) as error:
            raise StoreUnavailableError(f"Redis write failed ({error})") from None

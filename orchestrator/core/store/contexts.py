"""Contexts for sleep-time compute in Redis: the record, creating it with its precompute job,
and the changes a precompute or a question makes to it (each applied once per job)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis.exceptions import RedisError, WatchError

from orchestrator.core.budget import Budget, Usage, add_usage
from orchestrator.core.errors import ConflictError, NotFoundError, StoreUnavailableError
from orchestrator.core.store.jobs import JobRecord, JobStore
from orchestrator.core.store.records import AlsoWrite, Change
from orchestrator.core.store.scripts import CREATE_RECORDS

ContextStatus = Literal["queued", "computing", "ready", "failed"]


PRECOMPUTE_CANCELLED = {"type": "cancelled", "code": "cancelled", "message": "the precompute was cancelled"}
"""The error a context records when its precompute was cancelled (and the job holds none of its own)."""

CONTEXT_ID = re.compile(r"^ctx-[0-9a-f]{32}$")  # exactly what new_context_id mints


def new_context_id() -> str:
    """A fresh context id."""
    return f"ctx-{uuid.uuid4().hex}"


class ContextRecord(BaseModel):
    """A context, the memory precomputed over it, and what that cost.

    ``memory_version`` counts the memories stored so far (each kept in the context's
    history); ``sleep_usage`` sums their cost; ``queries`` counts the questions answered
    over the context, over which the sleep-time tokens are amortised.
    """

    id: str = Field(default_factory=new_context_id)
    text: str
    status: ContextStatus = "queued"
    sleep_budget: Budget = Field(default_factory=Budget)
    params: dict = Field(default_factory=dict)
    memory: str | None = None
    memory_version: int = 0
    sleep_usage: Usage = Field(default_factory=Usage)
    queries: int = 0
    job_id: str | None = Field(None, description="the precompute job")
    api_key_id: str | None = Field(None, description="the API key that created the context (its owner)")
    error: dict[str, str] | None = None
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @property
    def sleep_tokens(self) -> int:
        return self.sleep_usage.compute_tokens


class ContextStore(JobStore):
    """Contexts, stored beside their precompute jobs."""

    async def create_context_with_job(
        self, context: ContextRecord, job: JobRecord, quota: int | None = None, *, enqueue: bool = False
    ) -> None:
        """Store a context and its precompute job together (one step), refusing to overwrite;
        ``quota`` and ``enqueue`` as for ``create_job``."""
        records = {self._context_key(context.id): context, self._job_key(job.id): job}
        await self._create(records, job, quota, enqueue)

    async def extend_context(
        self,
        context_id: str,
        tenant: str | None,
        more: str,
        job: JobRecord,
        quota: int | None = None,
        *,
        enqueue: bool = False,
    ) -> ContextRecord:
        """Append ``more`` to a context ``tenant`` owns and store ``job``, its re-sleep, in one step
        (its budget reserved against ``quota``, queued with ``enqueue``); the memory so far stays
        until the new one is stored. A context whose memory is being computed is ``ConflictError``.
        ``job.question`` is set to the new text, ``job.context_id`` to the context."""
        key = self._context_key(context_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    context = None if raw is None else ContextRecord.model_validate_json(raw)
                    if context is None or context.api_key_id != tenant:
                        raise NotFoundError(f"context {context_id} does not exist: create it with POST /v1/contexts")
                    if context.status in ("queued", "computing"):
                        raise ConflictError(
                            f"context {context_id}'s memory is being computed (job {context.job_id}): "
                            "add to it once its status is ready or failed"
                        )
                    context.text = f"{context.text}\n{more}"
                    context.status, context.job_id, context.updated_at = "queued", job.id, time.time()
                    job.question, job.context_id = context.text, context.id
                    records = {key: context, self._job_key(job.id): job}
                    keys, arguments = self._creation(records, job, quota, enqueue, replaced=1)
                    pipe.multi()
                    pipe.eval(CREATE_RECORDS, len(keys), *keys, *arguments)
                    [created] = await pipe.execute()
                    await self._check_created(created, job, quota)
                    return context
                except WatchError:
                    continue  # the context changed meanwhile (a precompute ended): read it again
                except (RedisError, OSError) as error:
                    raise StoreUnavailableError(f"Redis write failed ({error})") from None

    async def delete_context(self, context_id: str) -> None:
        """Remove a context, its memories and its bookkeeping (its jobs stay, as records of what ran)."""
        keys = (self._context_key(context_id), self.keys.context_memories(context_id))
        await self.redis.delete(*keys, self.keys.context_jobs_applied(context_id))

    async def get_context(self, context_id: str) -> ContextRecord:
        """The context's record, or ``NotFoundError``."""
        raw = await self.redis.get(self._context_key(context_id))
        if raw is None:
            raise NotFoundError(f"context {context_id} does not exist: create it with POST /v1/contexts")
        return ContextRecord.model_validate_json(raw)

    async def get_owned_context(self, context_id: str, tenant: str | None) -> ContextRecord:
        """The context if ``tenant`` owns it; another tenant's is ``NotFoundError`` as a missing one."""
        context = await self.get_context(context_id)
        if context.api_key_id != tenant:
            raise NotFoundError(f"context {context_id} does not exist: create it with POST /v1/contexts")
        return context

    async def mark_context_computing(self, context_id: str) -> None:
        def computing(record: ContextRecord) -> ContextRecord | None:
            if record.status != "queued":
                return None
            record.status, record.updated_at = "computing", time.time()
            return record

        await self.transform(self._context_key(context_id), ContextRecord, computing, f"context {context_id}")

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

    async def _apply_once(
        self, context_id: str, job_id: str, change: Change[ContextRecord], also: AlsoWrite[ContextRecord] | None = None
    ) -> ContextRecord:
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
        """The key of a context named by a client; an id of any other shape names no context."""
        if not CONTEXT_ID.match(context_id):
            raise NotFoundError(
                f"context {context_id!r} does not exist (context ids look like ctx-<32 hex digits>): "
                "create it with POST /v1/contexts"
            )
        return self.keys.context(context_id)

    async def _ended_unsettled(self, job: JobRecord) -> None:
        """A precompute that ended without its worker settling it (cancelled while queued, crashed):
        the context learns so. Applied once per job, so a no-op where the worker did settle it."""
        if job.kind == "precompute" and job.context_id and job.status != "succeeded":
            error = job.error or PRECOMPUTE_CANCELLED
            await self.end_precompute(job.context_id, job.id, None, job.usage, error)

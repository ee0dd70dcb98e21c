"""Submitting jobs and waiting for them: what the reasoning and OpenAI-compatible endpoints share."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from api.models import JobSummary, ReasonResponse
from api.tenancy import caller
from orchestrator.core.budget import Budget
from orchestrator.core.chat import ChatOptions
from orchestrator.core.store import JobRecord
from orchestrator.core.store.jobs import TERMINAL, MemoryWait
from service.runtime import Runtime


async def submit_job(
    request: Request,
    question: str,
    budget: Budget | None,
    strategy: str,
    params: dict[str, Any],
    idempotency_key: str | None,
    *,
    context_id: str | None = None,
    context_memory: MemoryWait = "use_if_ready",
    retry: bool = True,
    chat: ChatOptions | None = None,
) -> JobRecord:
    """Validate, store and queue a job owned by the caller; the caller's idempotency key already
    used returns its job (``Runtime.submit``)."""
    runtime: Runtime = request.app.state.runtime
    return await runtime.submit(
        question,
        budget=budget,
        strategy=strategy,
        params=params,
        api_key=caller(request),
        context_id=context_id,
        context_memory=context_memory,
        idempotency_key=idempotency_key,
        enqueue=True,
        retry_engine_death=retry,
        chat=chat,
    )


async def wait_for_job(request: Request, job: JobRecord) -> JobRecord:
    """Wait for the job's result event (a blocking read, no polling); a client that goes away cancels it."""
    store = request.app.state.runtime.store
    after = "0-0"
    while job.status not in TERMINAL:
        events = await store.read_events(job.id, after, block_ms=500)
        if events:
            after = events[-1][0]
        if await request.is_disconnected():  # nobody is waiting for the answer any more
            return await store.request_cancel(job.id)
        if not events or any(event["type"] == "result" for _, event in events):
            job = await store.get_job(job.id)  # finished, or a quiet half-second: look at the record
    return job


KEEPALIVE_S = 10.0  # proxies drop an idle stream after 30-60 s: a comment well before that keeps it open


async def job_updates(request: Request, job_id: str, after: str = "0-0") -> AsyncIterator[tuple[str, dict] | None]:
    """A job's events after ``after`` as they come, ending after its result (or once it is over with
    nothing left to read); None whenever ``KEEPALIVE_S`` passed without one, for a keep-alive line.
    Stops when the client goes away."""
    store = request.app.state.runtime.store
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        events = await store.read_events(job_id, after, block_ms=int(min(1.0, KEEPALIVE_S) * 1000))
        for event_id, event in events:
            after = event_id
            yield event_id, event
            if event["type"] == "result":
                return
        if events:
            quiet_since = time.monotonic()
        elif (await store.get_job(job_id)).status in TERMINAL and not await store.read_events(job_id, after):
            return
        elif time.monotonic() - quiet_since >= KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield None


def summary(job: JobRecord) -> JobSummary:
    """A job as one line of the jobs list."""
    return JobSummary(
        job_id=job.id,
        status=job.status,
        kind=job.kind,
        strategy=job.strategy,
        question=job.question[:200],
        answer=job.answer,
        compute_tokens=job.usage.compute_tokens,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


def to_response(job: JobRecord) -> ReasonResponse:
    """A job as the API returns it."""
    return ReasonResponse(
        job_id=job.id,
        status=job.status,
        answer=job.answer,
        output=job.output,
        best_so_far=job.best_so_far,
        cut_off=job.cut_off,
        usage=job.usage,
        trace=job.trace,
        error=job.error,
    )

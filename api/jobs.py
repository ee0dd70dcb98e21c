"""Submitting jobs and waiting for them: what the reasoning and OpenAI-compatible endpoints share."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from api.models import ReasonResponse
from orchestrator.core.budget import Budget
from orchestrator.core.store import JobRecord
from orchestrator.core.store.store import TERMINAL, MemoryWait
from orchestrator.runtime import Runtime


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
) -> JobRecord:
    """Validate, store and enqueue a job; an idempotency key already used returns its job."""
    runtime: Runtime = request.app.state.runtime
    store = runtime.store
    if idempotency_key and (existing := await store.idempotent_target("job", idempotency_key)):
        return await store.get_job(existing)
    api_key = getattr(request.state, "api_key", None)
    job = await runtime.submit(
        question,
        budget=budget,
        strategy=strategy,
        params=params,
        api_key_id=api_key.id if api_key else None,
        context_id=context_id,
        context_memory=context_memory,
    )
    if idempotency_key:
        winner = await store.claim_idempotency("job", idempotency_key, job.id)
        if winner != job.id:  # a concurrent twin claimed the key first: this one never runs
            await store.request_cancel(job.id)
            return await store.get_job(winner)
    await request.app.state.queue.enqueue(job.id)
    return job


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


def to_response(job: JobRecord) -> ReasonResponse:
    """A job as the API returns it."""
    return ReasonResponse(
        job_id=job.id,
        status=job.status,
        answer=job.answer,
        output=job.output,
        best_so_far=job.best_so_far,
        usage=job.usage,
        trace=job.trace,
        error=job.error,
    )

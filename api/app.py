"""The FastAPI application. ``create_app(settings)`` builds it; ``ttc serve`` runs it."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from redis.exceptions import RedisError

from api.contexts import router as contexts_router
from api.jobs import job_updates, submit_job, summary, to_response, wait_for_job
from api.metrics import RequestCounter
from api.metrics import router as metrics_router
from api.models import ErrorEnvelope, Health, JobList, ReasonRequest, ReasonResponse, StrategyInfo, VerifierInfo
from api.openai_compat import router as openai_router
from api.security import RequestGuard, error_response
from api.tenancy import owned_job, tenant
from api.ui import UI_PATH, ui_app
from orchestrator.core.errors import (
    InvalidRequestError,
    StoreUnavailableError,
    TTCError,
    describe_problems,
    http_status_for_code,
)
from orchestrator.core.settings import Settings
from service.jobs import JobQueue
from service.runtime import Runtime
from strategies import REGISTRY

EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")  # a Redis stream entry id, as the events' ``id:`` lines carry
ERRORS = {404: {"model": ErrorEnvelope}, 400: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The API application.

    Without ``runtime`` the engine and Redis start with the app and stop with it; with
    one (``ttc serve`` opens it first, so start-up errors reach the terminal as such)
    the app only uses it. With ``embedded_worker`` on, the process also runs jobs.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _runtime(settings, runtime) as active, anyio.create_task_group() as group:
            app.state.runtime = active
            await JobQueue(active.store).ensure_group()
            if settings.embedded_worker:
                group.start_soon(active.worker().serve)
            yield
            group.cancel_scope.cancel()

    app = FastAPI(title="ttc", version="0.1.0", lifespan=lifespan, responses=ERRORS)
    _install_error_handlers(app)
    _install_routes(app)
    app.include_router(openai_router)
    app.include_router(contexts_router)
    app.include_router(metrics_router)
    app.mount(UI_PATH, ui_app(), name="ui")
    app.add_middleware(RequestGuard, settings=settings)
    app.add_middleware(RequestCounter)  # outermost: counts refused requests too
    return app


@asynccontextmanager
async def _runtime(settings: Settings, given: Runtime | None) -> AsyncIterator[Runtime]:
    if given is not None:
        yield given
        return
    async with Runtime.open(settings) as opened:
        yield opened


def _install_routes(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, responses={503: {"model": ErrorEnvelope}})
    async def readyz(request: Request) -> Health:
        """The engine and Redis can serve requests (with a fleet of servers, while one replica can;
        ``detail.replicas`` names any that are down)."""
        runtime: Runtime = request.app.state.runtime
        await runtime.store.ping()
        await runtime.backend.health()
        counters = await runtime.backend.counters()
        detail = {"model": runtime.backend.model.name, "counters": counters.__dict__}
        if replicas := await runtime.backend.replica_health():
            detail["replicas"] = replicas
        return Health(status="ready", detail=detail)

    @app.get("/v1/strategies", response_model=list[StrategyInfo])
    async def strategies() -> list[StrategyInfo]:
        """Every strategy with its params' JSON schema."""
        return [
            StrategyInfo(name=s.name, description=s.description, params_schema=s.params_schema())
            for s in REGISTRY.values()
        ]

    @app.get("/v1/verifiers", response_model=list[VerifierInfo])
    async def verifiers(request: Request) -> list[VerifierInfo]:
        """Every verifier a strategy's params can name, whether this service has it, and the reward
        model it serves."""
        runtime: Runtime = request.app.state.runtime
        return [VerifierInfo(**status.__dict__) for status in runtime.verifiers.describe()]

    @app.post("/v1/reason", response_model=ReasonResponse, responses={202: {"model": ReasonResponse}})
    async def reason(body: ReasonRequest, request: Request):
        """Answer a question within a budget: wait for the answer, or get the job id at once."""
        job = await submit_job(
            request,
            body.question,
            body.budget,
            body.strategy,
            body.params,
            body.idempotency_key,
            context_id=body.context_id,
            context_memory=body.context_memory,
            retry=body.retry,
        )
        if not body.wait:
            return JSONResponse(to_response(job).model_dump(mode="json"), status_code=202)
        job = await wait_for_job(request, job)
        if job.status == "failed" and job.error:  # the job record keeps the details under its id
            status = http_status_for_code(job.error["code"])
            return JSONResponse({"error": {**job.error, "job_id": job.id}}, status_code=status)
        return to_response(job)

    @app.get("/v1/jobs", response_model=JobList)
    async def list_jobs(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        before: Annotated[float | None, Query(ge=0, description="the last page's next_before")] = None,
    ) -> JobList:
        """The caller's jobs, newest first, a page at a time (jobs are kept for the retention period)."""
        jobs = await request.app.state.runtime.store.list_jobs(tenant(request), limit + 1, before)
        page = jobs[:limit]
        return JobList(
            data=[summary(job) for job in page],
            next_before=page[-1].created_at if len(jobs) > limit else None,
        )

    @app.get("/v1/jobs/{job_id}", response_model=ReasonResponse)
    async def get_job(job_id: str, request: Request) -> ReasonResponse:
        """A job's status, answer and usage."""
        return to_response(await owned_job(request, job_id))

    @app.delete("/v1/jobs/{job_id}", response_model=ReasonResponse)
    async def cancel_job(job_id: str, request: Request) -> ReasonResponse:
        """Cancel a job; a running one stops within a moment and its engine requests are aborted."""
        await owned_job(request, job_id)
        return to_response(await request.app.state.runtime.store.request_cancel(job_id))

    @app.get("/v1/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        """Server-Sent Events while the job runs: each depth or wave, then the result. A client that
        reconnects with ``Last-Event-ID`` gets only the events after that one."""
        await owned_job(request, job_id)  # 404 before the stream starts
        resume_from = request.headers.get("last-event-id", "0-0")
        if not EVENT_ID.match(resume_from):
            raise InvalidRequestError(f"Last-Event-ID {resume_from[:40]!r} is not an event id of this stream")

        async def stream() -> AsyncIterator[str]:
            async for update in job_updates(request, job_id, resume_from):
                if update is None:
                    yield ": keep-alive\n\n"
                    continue
                event_id, event = update
                yield f"id: {event_id}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
                if event["type"] == "result":
                    return
            if not await request.is_disconnected():
                yield f"event: end\ndata: {json.dumps({'type': 'end', 'job_id': job_id})}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TTCError)
    async def on_ttc_error(request: Request, error: TTCError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RedisError)
    @app.exception_handler(OSError)
    async def on_store_error(request: Request, error: Exception) -> JSONResponse:
        return error_response(StoreUnavailableError(f"Redis does not answer ({type(error).__name__}); retry shortly"))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = describe_problems(error.errors())
        envelope = InvalidRequestError(f"invalid request: {problems}").to_dict()
        return JSONResponse({"error": envelope}, status_code=422)

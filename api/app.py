"""The FastAPI application. ``create_app(settings)`` builds it; ``ttc serve`` runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.models import ErrorEnvelope, Health, ReasonRequest, ReasonResponse
from orchestrator.errors import InvalidRequestError, TTCError, http_status_for_code
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store import JobRecord


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The API application.

    Without ``runtime`` the engine and Redis start with the app and stop with it; with
    one (``ttc serve`` opens it first, so start-up errors reach the terminal as such)
    the app only uses it.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            app.state.runtime = runtime
            yield
            return
        async with Runtime.open(settings) as opened:
            app.state.runtime = opened
            yield

    app = FastAPI(title="ttc", version="0.1.0", lifespan=lifespan, responses={400: {"model": ErrorEnvelope}})
    _install_error_handlers(app)

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, responses={503: {"model": ErrorEnvelope}})
    async def readyz(request: Request) -> Health:
        """The engine and Redis can serve requests."""
        runtime: Runtime = request.app.state.runtime
        await runtime.store.ping()
        await runtime.backend.health()
        counters = await runtime.backend.counters()
        return Health(status="ready", detail={"model": runtime.backend.model.name, "counters": counters.__dict__})

    @app.post("/v1/reason", response_model=ReasonResponse)
    async def reason(body: ReasonRequest, request: Request) -> ReasonResponse:
        """Answer a question within a budget and wait for the result."""
        runtime: Runtime = request.app.state.runtime
        job = await runtime.reason(body.question, budget=body.budget, strategy=body.strategy, params=body.params)
        if job.status == "failed" and job.error:  # the job record keeps the details under its id
            return JSONResponse(  # type: ignore[return-value]
                {"error": {**job.error, "job_id": job.id}}, status_code=http_status_for_code(job.error["code"])
            )
        return _to_response(job)

    @app.get("/v1/jobs/{job_id}", response_model=ReasonResponse, responses={404: {"model": ErrorEnvelope}})
    async def get_job(job_id: str, request: Request) -> ReasonResponse:
        """A job's status, answer and usage."""
        runtime: Runtime = request.app.state.runtime
        return _to_response(await runtime.store.get_job(job_id))

    return app


def _to_response(job: JobRecord) -> ReasonResponse:
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


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TTCError)
    async def on_ttc_error(request: Request, error: TTCError) -> JSONResponse:
        return JSONResponse({"error": error.to_dict()}, status_code=error.http_status)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        envelope = InvalidRequestError(f"invalid request: {problems}").to_dict()
        return JSONResponse({"error": envelope}, status_code=422)

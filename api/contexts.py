"""Sleep-time compute over HTTP: ``POST /v1/contexts`` queues a precompute; ``GET`` shows it;
``PATCH`` appends text and queues a re-sleep; ``DELETE`` removes it and its memory."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.models import ContextInfo, ContextRequest, ContextUpdate, ErrorEnvelope
from api.tenancy import caller, owned_context
from orchestrator.core.store.contexts import ContextRecord
from service.runtime import Runtime

router = APIRouter()


def to_info(context: ContextRecord) -> ContextInfo:
    return ContextInfo(
        context_id=context.id,
        status=context.status,
        text=context.text,
        memory=context.memory,
        memory_version=context.memory_version,
        sleep_usage=context.sleep_usage,
        sleep_tokens=context.sleep_tokens,
        queries=context.queries,
        job_id=context.job_id,
        error=context.error,
    )


@router.post("/v1/contexts", status_code=202, response_model=ContextInfo, responses={400: {"model": ErrorEnvelope}})
async def create_context(body: ContextRequest, request: Request) -> JSONResponse:
    """Store a context and queue the precompute of its memory (a worker runs it); 202 with its id.

    An idempotency key already used returns its context (``Runtime.create_context``).
    """
    runtime: Runtime = request.app.state.runtime
    context, _ = await runtime.create_context(
        body.text,
        sleep_budget=body.sleep_budget,
        params=body.params,
        api_key=caller(request),
        idempotency_key=body.idempotency_key,
        enqueue=True,
    )
    return _accepted(context)


def _accepted(context: ContextRecord) -> JSONResponse:
    return JSONResponse(to_info(context).model_dump(mode="json"), status_code=202)


@router.get("/v1/contexts/{context_id}", response_model=ContextInfo, responses={404: {"model": ErrorEnvelope}})
async def get_context(context_id: str, request: Request) -> ContextInfo:
    """A context's status, its memory (once ready), the sleep tokens spent and the questions served."""
    return to_info(await owned_context(request, context_id))


@router.patch(
    "/v1/contexts/{context_id}",
    status_code=202,
    response_model=ContextInfo,
    responses={400: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}},
)
async def extend_context(context_id: str, body: ContextUpdate, request: Request) -> JSONResponse:
    """Append text to a context and queue the re-sleep of its memory (the facts still grounded are
    kept; the new ones are looked for); 202. Questions use the old memory until the new one is
    stored. A context still being computed is 409: append once it is ready."""
    runtime: Runtime = request.app.state.runtime
    context, _ = await runtime.extend_context(
        context_id,
        body.append,
        sleep_budget=body.sleep_budget,
        api_key=caller(request),
        idempotency_key=body.idempotency_key,
        enqueue=True,
    )
    return _accepted(context)


@router.delete("/v1/contexts/{context_id}", status_code=204, responses={404: {"model": ErrorEnvelope}})
async def delete_context(context_id: str, request: Request) -> Response:
    """Remove a context and its memory (a precompute still running is cancelled); 204."""
    runtime: Runtime = request.app.state.runtime
    await runtime.delete_context(context_id, api_key=caller(request))
    return Response(status_code=204)

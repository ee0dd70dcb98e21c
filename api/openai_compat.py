"""``POST /v1/chat/completions``: the OpenAI chat API in front of the strategies.

The strategy comes from the model name (``ttc/best_of_n``, ``ttc/ets``, plain ``ttc`` or
any other name means ``auto``) or from the extra body fields ``strategy`` and ``params``;
``budget`` sets the limits. The question is the last user message. ``usage`` counts every
token the strategy spent (all samples, all branches, the verifier's model calls).
With ``stream: true`` the answer arrives as one content chunk once the search has chosen
it — a search has no single token stream to forward — followed by usage and ``[DONE]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.jobs import submit_job, wait_for_job
from api.models import RequestBody
from orchestrator.core.budget import Budget
from orchestrator.core.errors import InvalidRequestError, http_status_for_code
from orchestrator.core.store import JobRecord

router = APIRouter()


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = None


class ChatCompletionRequest(RequestBody):
    """The OpenAI request fields ttc uses, plus its own extras."""

    model_config = ConfigDict(extra="allow")

    model: str = "ttc"
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, description="caps the request's compute tokens")
    strategy: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    budget: Budget | None = None


def strategy_for(body: ChatCompletionRequest) -> str:
    """``strategy`` field, else the model name's suffix after ``ttc/``, else ``auto``."""
    if body.strategy:
        return body.strategy
    prefix, _, name = body.model.partition("/")
    return name if prefix == "ttc" and name else "auto"


def question_of(body: ChatCompletionRequest) -> str:
    users = [m.content for m in body.messages if m.role == "user" and m.content]
    if not users:
        raise InvalidRequestError("messages must contain a user message with text content")
    return users[-1]


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    """OpenAI-compatible chat completion answered by a test-time compute strategy."""
    budget = body.budget or Budget()
    if body.max_tokens is not None and budget.max_tokens is None:
        budget = budget.model_copy(update={"max_tokens": body.max_tokens})
    job = await submit_job(request, question_of(body), budget, strategy_for(body), body.params, None)
    created = int(time.time())
    if body.stream:
        return StreamingResponse(_stream(request, job, body.model, created), media_type="text/event-stream")
    job = await wait_for_job(request, job)
    if job.status == "failed" and job.error:
        return JSONResponse(
            {"error": {**job.error, "job_id": job.id}}, status_code=http_status_for_code(job.error["code"])
        )
    return completion_body(job, body.model, created)


def _finish_reason(job: JobRecord) -> str:
    """OpenAI's words: "length" when a limit cut the answer's text off, else "stop"."""
    return "length" if job.cut_off or job.status != "succeeded" else "stop"


def _usage(job: JobRecord) -> dict[str, Any]:
    usage = job.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
    }


def _extension(job: JobRecord) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": job.status,
        "answer": job.answer,
        "best_so_far": job.best_so_far,
        "cut_off": job.cut_off,
        "usage": job.usage.model_dump(),
    }


def completion_body(job: JobRecord, model: str, created: int) -> dict[str, Any]:
    """A ``chat.completion`` object for a finished job."""
    return {
        "id": f"chatcmpl-{job.id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": job.output or ""},
                "finish_reason": _finish_reason(job),
            }
        ],
        "usage": _usage(job),
        "ttc": _extension(job),
    }


async def _stream(request: Request, job: JobRecord, model: str, created: int) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": f"chatcmpl-{job.id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        job = await wait_for_job(request, job)
    except anyio.get_cancelled_exc_class():  # the client went away mid-stream: nobody wants the answer
        with anyio.CancelScope(shield=True):
            await request.app.state.runtime.store.request_cancel(job.id)
        raise
    if job.status == "failed" and job.error:
        yield f"data: {json.dumps({'error': {**job.error, 'job_id': job.id}})}\n\n"
    else:
        yield chunk({"content": job.output or ""})
        finish = _finish_reason(job)
        yield chunk({}, finish, usage=_usage(job), ttc=_extension(job))
    yield "data: [DONE]\n\n"

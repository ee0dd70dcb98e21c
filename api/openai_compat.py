"""The OpenAI chat API in front of the strategies: ``GET /v1/models``, ``POST /v1/chat/completions``.

A stock OpenAI client (or a gateway such as LiteLLM) works unchanged:

- **Models.** ``ttc`` is ``auto``; ``ttc/<strategy>`` names any registered strategy. Any
  other model name is a 404 that lists them.
- **Messages.** The last user message is the question; every message before it (system,
  developer, user, assistant; ``content`` as text or a list of text parts) goes into every
  prompt the strategy renders (``orchestrator.core.chat``).
- **Parameters.** ``max_completion_tokens`` / ``max_tokens`` are the answer's length, as in
  OpenAI (the strategy's own ``max_tokens`` too, where it has one); ``stop`` cuts the answer
  at a stop string; ``temperature`` and ``top_p`` go to a strategy that samples with them,
  and are refused by one that does not; ``seed`` seeds every engine call where the engine
  can take one. The search budget is ``budget`` in the extra body, or ``reasoning_effort``
  (``EFFORT_BUDGETS``), else the service's default. What ttc cannot honour — ``n > 1``,
  tools, a non-text ``response_format``, ``logprobs``, penalties, ``logit_bias``, audio — is
  a 400 that says so; so is any field OpenAI does not define and ttc does not add.
- **Streaming.** While the search runs, its progress (strategy, wave or depth, current
  leader) arrives as ``reasoning_content`` deltas; then the answer as ``content``. ``direct``
  streams its tokens as the engine decodes them. A keep-alive comment goes out whenever
  ``KEEPALIVE_S`` pass in silence, so proxies keep the stream open.

Responses are built from the ``openai`` package's own types, with ttc's extras (job id,
answer, full usage) under ``ttc``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from openai.types.completion_usage import CompletionUsage, PromptTokensDetails
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.jobs import job_updates, submit_job, wait_for_job
from api.models import RequestBody
from api.progress import describe
from orchestrator.core.budget import Budget
from orchestrator.core.chat import MAX_STOPS, MAX_TURN_CHARS, MAX_TURNS, ChatOptions, Turn
from orchestrator.core.errors import InvalidRequestError, NotFoundError, describe_problems, http_status_for_code
from orchestrator.core.store import JobRecord
from strategies import REGISTRY

router = APIRouter()
EFFORT_BUDGETS = {"minimal": 256, "low": 1024, "medium": 4096, "high": 16384}
"""``reasoning_effort`` as a token budget (never above the service's ceiling)."""
REFUSED_UNLESS_DEFAULT: dict[str, Any] = {
    "n": 1,
    "tools": None,
    "tool_choice": None,
    "functions": None,
    "function_call": None,
    "parallel_tool_calls": None,
    "logprobs": False,
    "top_logprobs": None,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logit_bias": None,
    "audio": None,
    "prediction": None,
    "web_search_options": None,
}
"""OpenAI fields ttc does not support: accepted only at a value that asks nothing of it."""


class TextPart(BaseModel):
    """One part of a message's content; only text is understood."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[TextPart] | None = None

    def text(self, index: int) -> str:
        """The message's text; a part that is not text, or a role ttc cannot take, is a 400."""
        if self.role not in ("system", "developer", "user", "assistant"):
            raise InvalidRequestError(f"messages[{index}] has role {self.role!r}: tools are not supported")
        if isinstance(self.content, list):
            for part in self.content:
                if part.type != "text" or part.text is None:
                    raise InvalidRequestError(f"messages[{index}] has a {part.type!r} part: only text is supported")
            return "".join(part.text or "" for part in self.content)
        return self.content or ""


class ChatCompletionRequest(RequestBody):
    """OpenAI's chat request, plus ttc's ``strategy``, ``params`` and ``budget`` (the extra body)."""

    model_config = ConfigDict(extra="allow")  # unknown fields are refused by name in ``unsupported``

    model: str = "ttc"
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=MAX_TURNS + 1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1, description="the answer's length (OpenAI's older name)")
    max_completion_tokens: int | None = Field(None, ge=1, description="the answer's length in tokens")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = Field(None, max_length=256, description="the end user, for the caller's own records")
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    strategy: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    budget: Budget | None = None

    @property
    def answer_length(self) -> int | None:
        """The answer's length in tokens, by either of OpenAI's names for it."""
        return self.max_completion_tokens or self.max_tokens

    # OpenAI fields ttc cannot honour: declared, so a stock client's explicit defaults pass
    n: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None


def strategy_for(body: ChatCompletionRequest) -> str:
    """``strategy`` field, else the strategy the model name names (``ttc`` is ``auto``)."""
    if body.strategy:
        return body.strategy
    if body.model == "ttc":
        return "auto"
    prefix, _, name = body.model.partition("/")
    if prefix != "ttc" or name not in REGISTRY:
        raise NotFoundError(f"model {body.model[:80]!r} does not exist: use one of {', '.join(model_names())}")
    return name


def model_names() -> list[str]:
    return ["ttc", *(f"ttc/{name}" for name in REGISTRY)]


def unsupported(body: ChatCompletionRequest) -> list[str]:
    """What the request asks that ttc cannot do (each named with why), or nothing."""
    problems = [f"unknown field {name!r}" for name in sorted(body.model_extra or {})]
    for name, default in REFUSED_UNLESS_DEFAULT.items():
        value = getattr(body, name)
        if value is not None and value != default and value not in ([], {}):
            problems.append(f"{name}={value!r} is not supported")
    if body.response_format and body.response_format.get("type") != "text":
        problems.append("response_format other than text is not supported")
    if body.modalities and body.modalities != ["text"]:
        problems.append("only the text modality is supported")
    if body.max_tokens and body.max_completion_tokens and body.max_tokens != body.max_completion_tokens:
        problems.append("max_tokens and max_completion_tokens disagree: send one")
    if body.budget is not None and body.reasoning_effort is not None:
        problems.append("budget and reasoning_effort both set the search budget: send one")
    return problems


def conversation(body: ChatCompletionRequest) -> tuple[str, list[Turn]]:
    """The question (the last user message) and the turns before it."""
    texts = [(message.role, message.text(index)) for index, message in enumerate(body.messages)]
    for index, (_, text) in enumerate(texts):
        if len(text) > MAX_TURN_CHARS:
            raise InvalidRequestError(f"messages[{index}] has {len(text)} characters; at most {MAX_TURN_CHARS}")
    last_user = max((i for i, (role, text) in enumerate(texts) if role == "user" and text.strip()), default=None)
    if last_user is None:
        raise InvalidRequestError("messages must contain a user message with text content")
    if last_user != len(texts) - 1:
        raise InvalidRequestError(
            "the last message must be the user's question (an assistant prefill is not supported)"
        )
    history = [Turn(role="system" if role == "developer" else role, content=text) for role, text in texts[:last_user]]
    return texts[last_user][1], history


def strategy_params(body: ChatCompletionRequest, strategy: str) -> dict[str, Any]:
    """``params`` with the OpenAI sampling fields the strategy takes; one it does not take is a 400."""
    params = dict(body.params)
    fields = REGISTRY[strategy].params_model.model_fields
    wanted = {"temperature": body.temperature, "top_p": body.top_p}
    if body.answer_length is not None and "max_tokens" in fields:
        wanted["max_tokens"] = body.answer_length
    for name, value in wanted.items():
        if value is None or (name == "top_p" and value == 1.0 and name not in fields):
            continue
        if name not in fields:
            raise InvalidRequestError(f"{strategy} does not sample with {name}: leave it unset or pick another model")
        if name in params and params[name] != value:
            raise InvalidRequestError(f"{name} is set twice ({value!r}, and {params[name]!r} in params): send one")
        params[name] = value
    return params


def budget_for(body: ChatCompletionRequest, request: Request) -> Budget | None:
    """``budget``, else ``reasoning_effort``'s budget (at most the service's ceiling), else None (the default)."""
    if body.reasoning_effort is None:
        return body.budget
    ceiling = request.app.state.runtime.settings.limits.max_tokens
    return Budget(max_tokens=min(EFFORT_BUDGETS[body.reasoning_effort], ceiling))


@router.get("/v1/models")
async def list_models() -> dict[str, Any]:
    """``ttc`` (``auto``) and ``ttc/<strategy>`` for every strategy, as OpenAI lists models."""
    models = [Model(id=name, created=0, object="model", owned_by="ttc") for name in model_names()]
    return {"object": "list", "data": [model.model_dump(exclude_none=True) for model in models]}


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    """OpenAI-compatible chat completion answered by a test-time compute strategy."""
    if problems := unsupported(body):
        raise InvalidRequestError("; ".join(problems))
    strategy = strategy_for(body)
    question, history = conversation(body)
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > MAX_STOPS:
        raise InvalidRequestError(f"stop takes at most {MAX_STOPS} strings")
    try:
        chat = ChatOptions(
            history=history,
            answer_max_tokens=body.answer_length,
            stop=stops,
            seed=body.seed,
            stream_tokens=body.stream and strategy == "direct",
        )
    except ValidationError as error:  # too many turns, a seed out of range: the client's to fix
        raise InvalidRequestError(f"invalid chat request: {describe_problems(error.errors(), 'request')}") from None
    params = strategy_params(body, strategy)
    job = await submit_job(request, question, budget_for(body, request), strategy, params, None, chat=chat)
    created = int(time.time())
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage", False))
        chunks = _stream(request, job, body.model, created, chat, include_usage)
        return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    job = await wait_for_job(request, job)
    if job.status == "failed" and job.error:
        return JSONResponse(
            {"error": {**job.error, "job_id": job.id}}, status_code=http_status_for_code(job.error["code"])
        )
    return completion(job, body.model, created).model_dump(exclude_none=True)


def finish_reason(job: JobRecord) -> Literal["stop", "length"]:
    """OpenAI's words: "length" when a limit cut the answer's text off, else "stop"."""
    return "length" if job.cut_off or job.status != "succeeded" else "stop"


def usage_of(job: JobRecord) -> CompletionUsage:
    usage = job.usage
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_prompt_tokens),
    )


def ttc_extension(job: JobRecord) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": job.status,
        "answer": job.answer,
        "best_so_far": job.best_so_far,
        "cut_off": job.cut_off,
        "usage": job.usage.model_dump(),
    }


def completion(job: JobRecord, model: str, created: int) -> ChatCompletion:
    """A ``chat.completion`` for a finished job."""
    message = ChatCompletionMessage(role="assistant", content=job.output or "")
    return ChatCompletion(
        id=f"chatcmpl-{job.id}",
        object="chat.completion",
        created=created,
        model=model,
        choices=[Choice(index=0, message=message, finish_reason=finish_reason(job))],
        usage=usage_of(job),
        ttc=ttc_extension(job),  # type: ignore[call-arg]  # the openai types keep extra fields
    )


class StopScanner:
    """Streams text up to the first stop string: holds back a tail that could begin one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [stop for stop in stops if stop]
        self.held, self.stopped = "", False

    def feed(self, text: str) -> str:
        """What of ``text`` may be sent now."""
        if self.stopped:
            return ""
        self.held += text
        found = [index for stop in self.stops if (index := self.held.find(stop)) >= 0]
        if found:
            self.stopped = True
            sendable, self.held = self.held[: min(found)], ""
            return sendable
        keep = max((len(stop) - 1 for stop in self.stops), default=0)
        cut = max(0, len(self.held) - keep)
        sendable, self.held = self.held[:cut], self.held[cut:]
        return sendable


async def _stream(
    request: Request, job: JobRecord, model: str, created: int, chat: ChatOptions, include_usage: bool
) -> AsyncIterator[str]:
    def chunk(delta: ChoiceDelta, finish: str | None = None) -> str:
        body = ChatCompletionChunk(
            id=f"chatcmpl-{job.id}",
            object="chat.completion.chunk",
            created=created,
            model=model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
        )
        return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

    store = request.app.state.runtime.store
    answered = False
    try:  # however the stream ends before the answer (client gone, generator closed), the job is cancelled
        yield chunk(ChoiceDelta(role="assistant", content=""))
        scanner, streamed = StopScanner(chat.stop), ""
        async for update in job_updates(request, job.id):
            if update is None:
                yield ": keep-alive\n\n"
                continue
            _, event = update
            if event["type"] == "delta":
                if sendable := scanner.feed(event["text"]):
                    streamed += sendable
                    yield chunk(ChoiceDelta(content=sendable))
            elif line := describe(event):
                yield chunk(ChoiceDelta(reasoning_content=line))  # type: ignore[call-arg]
        if await request.is_disconnected():
            return
        job = await store.get_job(job.id)
        answered = True
    finally:
        if not answered:
            with anyio.CancelScope(shield=True):
                await store.request_cancel(job.id)
    if job.status == "failed" and job.error:
        yield f"data: {ErrorChunk(error={**job.error, 'job_id': job.id}).model_dump_json()}\n\n"
    else:
        output = job.output or ""
        rest = output[len(streamed) :] if output.startswith(streamed) else ("" if streamed else output)
        if rest:
            yield chunk(ChoiceDelta(content=rest))
        yield chunk(ChoiceDelta(), finish_reason(job))
        if include_usage:
            final = ChatCompletionChunk(
                id=f"chatcmpl-{job.id}",
                object="chat.completion.chunk",
                created=created,
                model=model,
                choices=[],
                usage=usage_of(job),
                ttc=ttc_extension(job),  # type: ignore[call-arg]
            )
            yield f"data: {final.model_dump_json(exclude_none=True)}\n\n"
    yield "data: [DONE]\n\n"


class ErrorChunk(BaseModel):
    """A failure in the middle of a stream, as OpenAI sends one."""

    error: dict[str, str]

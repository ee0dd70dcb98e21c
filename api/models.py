"""Request and response models of the HTTP API (the SDK uses the same ones)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.budget import Budget, Usage

IDEMPOTENCY_KEY = r"^[A-Za-z0-9_.:-]{1,128}$"


def lone_surrogate_at(value: Any, path: str = "body") -> str | None:
    """Where in a JSON value a string holds a lone UTF-16 surrogate (JSON allows ``"\ud800"``;
    UTF-8, and so Redis and the tokenizer, do not), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
    elif isinstance(value, dict):
        for key, item in value.items():
            found = lone_surrogate_at(key, f"{path} key") or lone_surrogate_at(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if found := lone_surrogate_at(item, f"{path}[{index}]"):
                return found
    return None


class RequestBody(BaseModel):
    """A request body: every string in it, however deep (params too), must be valid Unicode."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        if where := lone_surrogate_at(data):
            raise ValueError(f"{where} holds a lone UTF-16 surrogate: send valid Unicode text")
        return data


class ReasonRequest(RequestBody):
    """Ask a question under a budget with a named strategy."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(..., min_length=1, max_length=32_000)
    budget: Budget | None = None
    strategy: str = "direct"
    params: dict[str, Any] = Field(default_factory=dict)
    wait: bool = Field(True, description="wait for the answer; false returns the job id at once (202)")
    idempotency_key: str | None = Field(
        None, pattern=IDEMPOTENCY_KEY, description="the same key returns the same job (per API key)"
    )
    context_id: str | None = Field(
        None, max_length=128, description="ask over this context (POST /v1/contexts); another id shape is a 404"
    )
    context_memory: Literal["use_if_ready", "wait"] = Field(
        "use_if_ready", description="the context's memory is not ready yet: answer without it, or wait for it"
    )
    retry: bool = Field(True, description="if the engine dies under the job, run it once more (both are charged)")


class ContextRequest(RequestBody):
    """A context to think about before questions arrive (sleep-time compute)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=64_000)
    sleep_budget: Budget | None = Field(None, description="limits of the precompute (default: the service's)")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="sleep params: rounds, questions, samples, agree, retrieve, ... (GET /v1/strategies: sleep_time)",
    )
    idempotency_key: str | None = Field(
        None, pattern=IDEMPOTENCY_KEY, description="the same key returns the same context (per API key)"
    )


class ContextUpdate(RequestBody):
    """Text to append to a context; its memory is then recomputed over what changed."""

    model_config = ConfigDict(extra="forbid")

    append: str = Field(..., min_length=1, max_length=64_000, description="text added after the context's own")
    sleep_budget: Budget | None = Field(None, description="limits of the re-sleep (default: the context's)")
    idempotency_key: str | None = Field(
        None, pattern=IDEMPOTENCY_KEY, description="the same key appends once (per API key)"
    )


class ContextInfo(BaseModel):
    """A context: its status, the memory precomputed over it, and what that cost."""

    context_id: str
    status: str
    text: str = Field("", description="the context as it stands (with every append)")
    memory: str | None
    memory_version: int
    sleep_usage: Usage
    sleep_tokens: int
    queries: int
    job_id: str | None
    error: dict[str, str] | None = None


class StrategyInfo(BaseModel):
    """A strategy's name, what it does, and its params' JSON schema."""

    name: str
    description: str
    params_schema: dict[str, Any]


class VerifierInfo(BaseModel):
    """A verifier strategies can name in their params: what it reads, whether this service has it,
    and for ``orm`` / ``prm`` the reward model it serves."""

    name: str
    summary: str
    available: bool
    unavailable_reason: str | None = Field(None, description="what the operator must set to make it available")
    reward_model: dict[str, Any] | None = Field(
        None,
        description="the served reward model: kind, base_model, judged_model, trained_at, items, validation AUROC",
    )


class ReasonResponse(BaseModel):
    """The answer, how much it cost, and how it was found."""

    job_id: str
    status: str
    answer: str | None
    output: str | None
    best_so_far: bool = Field(description="a limit ended the search; this is the best answer found by then")
    cut_off: bool = Field(
        False, description="the answer's text stopped at a length or budget limit, not where the model ended it"
    )
    usage: Usage
    trace: dict[str, Any]
    error: dict[str, str] | None = None


class JobSummary(BaseModel):
    """One line of the jobs list: what was asked, how it went, what it cost."""

    job_id: str
    status: str
    kind: str
    strategy: str
    question: str = Field(description="the question's first 200 characters")
    answer: str | None
    compute_tokens: int
    created_at: float
    updated_at: float


class JobList(BaseModel):
    """A page of the caller's jobs, newest first; ``next_before`` asks for the page after it."""

    data: list[JobSummary]
    next_before: float | None = Field(description="pass as ?before= for the next page; null on the last page")


class ErrorEnvelope(BaseModel):
    """Every error response: ``{"error": {"type", "code", "message"}}``."""

    error: dict[str, str]


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    detail: dict[str, Any] = Field(default_factory=dict)

"""Request and response models of the HTTP API (the SDK uses the same ones)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.budget import Budget, Usage


class ReasonRequest(BaseModel):
    """Ask a question under a budget with a named strategy."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(..., min_length=1, max_length=32_000)
    budget: Budget | None = None
    strategy: str = "direct"
    params: dict[str, Any] = Field(default_factory=dict)
    wait: bool = Field(True, description="wait for the answer; false returns the job id at once (202)")
    idempotency_key: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="the same key returns the same job"
    )
    context_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="ask over this context (POST /v1/contexts)"
    )
    context_memory: Literal["use_if_ready", "wait"] = Field(
        "use_if_ready", description="the context's memory is not ready yet: answer without it, or wait for it"
    )


class ContextRequest(BaseModel):
    """A context to think about before questions arrive (sleep-time compute)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=64_000)
    sleep_budget: Budget | None = Field(None, description="limits of the precompute (default: the service's)")
    params: dict[str, Any] = Field(default_factory=dict, description="sleep params: rounds, round_max_tokens, ...")
    idempotency_key: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.:-]{1,100}$", description="the same key returns the same context"
    )


class ContextInfo(BaseModel):
    """A context: its status, the memory precomputed over it, and what that cost."""

    context_id: str
    status: str
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


class ReasonResponse(BaseModel):
    """The answer, how much it cost, and how it was found."""

    job_id: str
    status: str
    answer: str | None
    output: str | None
    best_so_far: bool
    usage: Usage
    trace: dict[str, Any]
    error: dict[str, str] | None = None


class ErrorEnvelope(BaseModel):
    """Every error response: ``{"error": {"type", "code", "message"}}``."""

    error: dict[str, str]


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    detail: dict[str, Any] = Field(default_factory=dict)

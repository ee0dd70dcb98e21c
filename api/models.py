"""Request and response models of the HTTP API (the SDK uses the same ones)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.budget import Budget, Usage


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

"""What the store keeps about a context for sleep-time compute."""

from __future__ import annotations

import re
import time
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from orchestrator.core.budget import Budget, Usage

ContextStatus = Literal["queued", "computing", "ready", "failed"]


CONTEXT_ID = re.compile(r"^ctx-[0-9a-f]{32}$")  # exactly what new_context_id mints


def new_context_id() -> str:
    """A fresh context id."""
    return f"ctx-{uuid.uuid4().hex}"


class ContextRecord(BaseModel):
    """A context, the memory precomputed over it, and what that cost.

    ``memory_version`` counts the memories stored so far (each kept in the context's
    history); ``sleep_usage`` sums their cost; ``queries`` counts the questions answered
    over the context, over which the sleep-time tokens are amortised.
    """

    id: str = Field(default_factory=new_context_id)
    text: str
    status: ContextStatus = "queued"
    sleep_budget: Budget = Field(default_factory=Budget)
    params: dict = Field(default_factory=dict)
    memory: str | None = None
    memory_version: int = 0
    sleep_usage: Usage = Field(default_factory=Usage)
    queries: int = 0
    job_id: str | None = Field(None, description="the precompute job")
    api_key_id: str | None = Field(None, description="the API key that created the context (its owner)")
    error: dict[str, str] | None = None
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @property
    def sleep_tokens(self) -> int:
        return self.sleep_usage.compute_tokens

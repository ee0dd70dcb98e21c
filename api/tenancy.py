"""Whose request this is, and what it may see: every job and context belongs to the API key
that created it, and any other key is told it does not exist (404, never 403, so a tenant
cannot even confirm another's ids). A service without keys is one tenant."""

from __future__ import annotations

from fastapi import Request

from orchestrator.core.store import JobRecord
from orchestrator.core.store.api_keys import ApiKey
from orchestrator.core.store.contexts import ContextRecord


def caller(request: Request) -> ApiKey | None:
    """The API key the request guard accepted (None when the service has no keys)."""
    return getattr(request.state, "api_key", None)


def tenant(request: Request) -> str | None:
    """The caller's API key id: what owns the jobs and contexts it creates."""
    key = caller(request)
    return key.id if key else None


async def owned_job(request: Request, job_id: str) -> JobRecord:
    """The caller's job ``job_id``, or ``NotFoundError`` (missing or another tenant's alike)."""
    return await request.app.state.runtime.store.get_owned_job(job_id, tenant(request))


async def owned_context(request: Request, context_id: str) -> ContextRecord:
    """The caller's context ``context_id``, or ``NotFoundError`` (missing or another tenant's alike)."""
    return await request.app.state.runtime.store.get_owned_context(context_id, tenant(request))

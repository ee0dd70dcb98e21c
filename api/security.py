"""API keys, per-key token quotas and request size limits.

Keys are required as soon as one exists (``ttc keys create``); only their SHA-256 is
stored. A key's quota counts the compute tokens of its finished jobs; once spent, new
requests get 429 ``quota_exceeded``. Health and metrics endpoints stay open for probes.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.core.errors import AuthenticationError, QuotaExceededError, RequestTooLargeError, TTCError
from orchestrator.core.settings import Settings

OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc"}


class RequestGuard:
    """Pure ASGI middleware: size limit, then API key and quota.

    Pure ASGI rather than ``BaseHTTPMiddleware``, which would hide the client's
    disconnect from the endpoint (and a disconnect must cancel the client's job).
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            _check_size(request, self.settings.max_request_bytes)
            if request.url.path not in OPEN_PATHS:
                await _check_key(request)
        except TTCError as error:
            response = JSONResponse({"error": error.to_dict()}, status_code=error.http_status)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _check_size(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestTooLargeError(f"the request body has {length} bytes; the limit is {limit}")


async def _check_key(request: Request) -> None:
    store = request.app.state.runtime.store
    if not await store.has_api_keys():
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("this service requires an API key: send 'Authorization: Bearer <key>'")
    key = await store.find_api_key(token.strip())
    if key is None:
        raise AuthenticationError("unknown API key")
    if key.quota_tokens is not None and await store.api_key_tokens_used(key.id) >= key.quota_tokens:
        raise QuotaExceededError(f"API key {key.name!r} has spent its quota of {key.quota_tokens} tokens")
    request.state.api_key = key  # kept in the ASGI scope, so the endpoint sees it

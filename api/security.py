"""API keys, per-key token quotas and request size limits.

Keys are required as soon as one exists (``ttc keys create``); only their SHA-256 is
stored. A key's quota counts the compute tokens of its finished jobs plus the token
budgets of its unfinished ones (reserved at submit, settled to the real spend at the end);
a request that would not fit gets 429 ``quota_exceeded``. Health and metrics endpoints
stay open for probes.

Bodies are limited by counting bytes as they arrive, so a chunked body (no
Content-Length) is refused with 413 as soon as it passes the limit, not after it was read.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from api.ui import is_ui_path
from orchestrator.core.errors import (
    AuthenticationError,
    QuotaExceededError,
    RequestTooLargeError,
    StoreUnavailableError,
    TTCError,
)
from orchestrator.core.settings import Settings

OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc"}  # and the page's files


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
        limit = self.settings.max_request_bytes
        try:
            _check_declared_size(request, limit)
            if request.url.path not in OPEN_PATHS and not is_ui_path(request.url.path):
                await _check_key(request)
        except (RedisError, OSError) as error:
            await _refuse(
                StoreUnavailableError(f"Redis does not answer ({type(error).__name__})"), scope, receive, send
            )
            return
        except TTCError as error:
            await _refuse(error, scope, receive, send)
            return
        await _LimitedBody(limit, scope, receive, send).run(self.app)


RETRY_AFTER_S = 5  # what a 503 tells clients to wait (Redis or the engine is coming back)


def error_response(error: TTCError) -> JSONResponse:
    """The error envelope with the error's status; a 503 says when to retry."""
    headers = {"Retry-After": str(RETRY_AFTER_S)} if error.http_status == 503 else None
    return JSONResponse({"error": error.to_dict()}, status_code=error.http_status, headers=headers)


async def _refuse(error: TTCError, scope: Scope, receive: Receive, send: Send) -> None:
    await error_response(error)(scope, receive, send)


def _check_declared_size(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestTooLargeError(f"the request body has {length} bytes; the limit is {limit}")


class _LimitedBody:
    """Runs the app with a ``receive`` that counts body bytes. Past the limit it answers 413
    itself, tells the app the client left (so it stops reading), and drops what the app sends."""

    def __init__(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit, self.scope, self.receive, self.send = limit, scope, receive, send
        self.received = 0
        self.refused = False
        self.response_started = False

    async def run(self, app: ASGIApp) -> None:
        await app(self.scope, self._receive, self._send)

    async def _receive(self) -> dict:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit and not self.response_started:
                self.refused = True
                error = RequestTooLargeError(f"the request body is over the limit of {self.limit} bytes")
                await _refuse(error, self.scope, self.receive, self.send)
                return {"type": "http.disconnect"}
        return message

    async def _send(self, message: dict) -> None:
        if self.refused:
            return  # the 413 is already sent; what the app makes of the "disconnect" goes nowhere
        self.response_started = True
        await self.send(message)


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
    if key.quota_tokens is not None and await store.api_key_tokens_committed(key.id) >= key.quota_tokens:
        raise QuotaExceededError(
            f"API key {key.name!r} has spent or reserved its quota of {key.quota_tokens} tokens "
            "(reservations of running jobs return when they finish)"
        )
    request.state.api_key = key  # kept in the ASGI scope, so the endpoint sees it

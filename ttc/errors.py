"""The SDK's errors: one class per HTTP status family, carrying the API's stable code."""

from __future__ import annotations


class TTCAPIError(Exception):
    """The service answered with an error envelope (or not at all)."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "unknown", body: object = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.body = message, status, code, body


class APIConnectionError(TTCAPIError):
    """The service could not be reached (after retries)."""


class APITimeoutError(APIConnectionError):
    """The request or the wait for a job timed out."""


class BadRequestError(TTCAPIError):
    """400/422: the request must change; the message says how."""


class AuthenticationError(TTCAPIError):
    """401: missing or wrong API key."""


class PermissionDeniedError(TTCAPIError):
    """403: the key may not do this (e.g. its quota is spent)."""


class NotFoundError(TTCAPIError):
    """404: no such job, context or strategy."""


class BudgetExceededError(TTCAPIError):
    """402: the budget ran out before any answer was produced."""


class RateLimitError(TTCAPIError):
    """429: too many requests; retried automatically."""


class InternalServerError(TTCAPIError):
    """5xx: the service or its engine failed; retried automatically."""


_BY_STATUS: dict[int, type[TTCAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BudgetExceededError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_for(status: int, body: object) -> TTCAPIError:
    """The error matching an HTTP status and the API's envelope ``{"error": {type, code, message}}``."""
    envelope = body.get("error", {}) if isinstance(body, dict) else {}
    message = envelope.get("message") if isinstance(envelope, dict) else None
    code = envelope.get("code", "unknown") if isinstance(envelope, dict) else "unknown"
    cls = _BY_STATUS.get(status, InternalServerError if status >= 500 else TTCAPIError)
    return cls(message or f"HTTP {status}: {body}", status=status, code=code, body=body)

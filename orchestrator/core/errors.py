"""One error hierarchy for the whole service.

Every error carries a stable machine-readable ``code`` and the HTTP status the
API maps it to, so the API, the SDK and the CLI report the same failure the same
way. Messages say what to fix, not only what went wrong.
"""

from __future__ import annotations


class TTCError(Exception):
    """Base of every error the service raises on purpose."""

    code: str = "internal_error"
    http_status: int = 500
    error_type: str = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The error envelope body shared by the API and the SDK."""
        return {"type": self.error_type, "code": self.code, "message": self.message}


# --- client errors: the request must change -------------------------------------------------


class InvalidRequestError(TTCError):
    """The request is malformed or asks for something impossible."""

    code = "invalid_request"
    http_status = 400
    error_type = "invalid_request_error"


class PromptTooLongError(InvalidRequestError):
    """The rendered prompt does not fit in the model's context window."""

    code = "prompt_too_long"


class JobExistsError(InvalidRequestError):
    """A job (or context) with this id is stored already."""

    code = "already_exists"
    http_status = 409


class ConflictError(InvalidRequestError):
    """The request is valid but the record is busy (a context whose memory is being computed)."""

    code = "conflict"
    http_status = 409


class RequestTooLargeError(InvalidRequestError):
    """The request body is larger than the service accepts."""

    code = "request_too_large"
    http_status = 413


class AuthenticationError(TTCError):
    """No API key, or one the service does not know."""

    code = "unauthorized"
    http_status = 401
    error_type = "authentication_error"


class QuotaExceededError(TTCError):
    """The API key's token quota is spent."""

    code = "quota_exceeded"
    http_status = 429
    error_type = "rate_limit_error"


class NotFoundError(TTCError):
    """A named object (job, context, strategy) does not exist."""

    code = "not_found"
    http_status = 404
    error_type = "invalid_request_error"


# --- configuration and start-up -------------------------------------------------------------


class ConfigurationError(TTCError):
    """A setting is missing or wrong; the message names the setting to fix."""

    code = "configuration_error"
    http_status = 500
    error_type = "configuration_error"


class ModelNotFoundError(ConfigurationError):
    """The configured model path or name cannot be loaded."""

    code = "model_not_found"


class ModelIntegrityError(ConfigurationError):
    """A downloaded model file is not the one the catalogue pins (size or sha256): it is not used."""

    code = "model_integrity"


# --- budget ----------------------------------------------------------------------------------


class BudgetExceededError(TTCError):
    """A request crossed one of its limits (tokens, FLOPs or deadline).

    Strategies catch this and return their best answer so far, flagged as such;
    it only reaches a client when nothing at all could be produced.
    """

    code = "budget_exceeded"
    http_status = 402
    error_type = "budget_error"

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


# --- backends and state ----------------------------------------------------------------------


class BackendError(TTCError):
    """The generation backend failed to serve a request."""

    code = "backend_error"
    http_status = 502
    error_type = "backend_error"


class BackendUnavailableError(BackendError):
    """The backend cannot be reached (remote server down, engine starting)."""

    code = "backend_unavailable"
    http_status = 503


class EngineDiedError(BackendError):
    """The inference engine died while requests were in flight; it is being restarted."""

    code = "engine_died"
    http_status = 503


class RequestAbortedError(BackendError):
    """A generation request was aborted before it finished."""

    code = "request_aborted"
    http_status = 499


class JobCrashedError(TTCError):
    """Every worker that started the job stopped before it ended; it is not retried again."""

    code = "job_crashed"
    http_status = 500
    error_type = "server_error"


class StoreUnavailableError(TTCError):
    """Redis cannot be reached; the message names the setting to fix."""

    code = "store_unavailable"
    http_status = 503
    error_type = "server_error"


def http_status_for_code(code: str) -> int:
    """The HTTP status of the error class with this stable code (500 if unknown)."""
    pending: list[type[TTCError]] = [TTCError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls.http_status
        pending.extend(cls.__subclasses__())
    return 500


def describe_problems(errors: list[dict], whole: str = "") -> str:
    """Pydantic's validation errors as one line naming each field: ``"n: must be >= 1; ..."``.

    ``whole`` names the object when an error is about all of it (an empty location).
    """
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in errors)

"""What every ``ttc`` command shares: settings, quiet engine logs, and one way to fail."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from orchestrator.core.errors import ConfigurationError, TTCError, describe_problems
from orchestrator.core.settings import Settings
from ttc.errors import TTCAPIError

T = TypeVar("T")


def quiet_engine_logs() -> None:
    """vLLM and transformers log a lot at start-up; a person at a terminal wants the answer."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


USAGE_STATUSES = {400, 401, 403, 404, 409, 413, 422}  # what the caller asked for is wrong: fix the command


def fail(error: Exception) -> NoReturn:
    """A usage error: print one line naming what to fix and exit with status 2."""
    exit_with(error, code=2)


def exit_with(error: Exception, code: int) -> NoReturn:
    """Print one line saying what went wrong and exit with ``code`` (2: usage, 1: it failed)."""
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def exit_code(error: TTCError | TTCAPIError) -> int:
    """2 when the command asked for something wrong (a bad value, an unknown name or id, a
    missing key, a setting to fix); 1 when the work itself failed (engine, network, a job)."""
    if isinstance(error, ConfigurationError):
        return 2
    status = error.status if isinstance(error, TTCAPIError) else error.http_status
    return 2 if status in USAGE_STATUSES else 1


def load_settings() -> Settings:
    """The process settings, or a one-line error naming the setting to fix."""
    try:
        return Settings()
    except ValidationError as error:
        fail(TTCError(f"invalid settings: {describe_problems(error.errors(), 'settings')}"))
    except TTCError as error:
        fail(error)


def run(go: Callable[[], Awaitable[T]]) -> T:
    """Run an async command; service and API errors end it with one line. SIGTERM (what
    ``docker stop`` and systemd send) stops it as Ctrl-C does: through every ``finally``, so
    the engine and the embedded Redis it started stop with it."""
    import anyio

    outcome: dict[str, T] = {}

    async def until_terminated() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_sigterm, group.cancel_scope)
            outcome["result"] = await go()
            group.cancel_scope.cancel()

    try:
        anyio.run(until_terminated)
    except BaseException as raised:  # task groups wrap what a command raised: unwrap a lone error
        error = _unwrapped(raised)
        if isinstance(error, TTCError | TTCAPIError):
            exit_with(error, exit_code(error))
        raise
    if "result" not in outcome:  # SIGTERM: the commands' own "stopped" handling, as for Ctrl-C
        raise KeyboardInterrupt
    return outcome["result"]


def _unwrapped(error: BaseException) -> BaseException:
    """The one error inside (nested) exception groups of one, else ``error``."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def _cancel_on_sigterm(scope: Any) -> None:
    import anyio

    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return

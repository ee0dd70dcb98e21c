"""What every ``ttc`` command shares: settings, quiet engine logs, and one way to fail."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from orchestrator.core.errors import TTCError, describe_problems
from orchestrator.core.settings import Settings
from ttc.errors import TTCAPIError

T = TypeVar("T")


def quiet_engine_logs() -> None:
    """vLLM and transformers log a lot at start-up; a person at a terminal wants the answer."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def fail(error: Exception) -> NoReturn:
    """Print one line naming what to fix and exit with status 2."""
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


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
    except (TTCError, TTCAPIError) as error:
        fail(error)
    if "result" not in outcome:  # SIGTERM: the commands' own "stopped" handling, as for Ctrl-C
        raise KeyboardInterrupt
    return outcome["result"]


async def _cancel_on_sigterm(scope: Any) -> None:
    import anyio

    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return

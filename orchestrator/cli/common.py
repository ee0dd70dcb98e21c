"""What every ``ttc`` command shares: settings, quiet engine logs, and one way to fail."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

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
    """Run an async command; service and API errors end it with one line."""
    import anyio

    try:
        return anyio.run(go)
    except (TTCError, TTCAPIError) as error:
        fail(error)

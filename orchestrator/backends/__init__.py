"""Generation backends: the only code that knows vLLM.

``open_backend(settings)`` builds the one the settings ask for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.backends.base import (
    BackendCounters,
    Completion,
    GenerationBackend,
    GenerationResult,
    ModelInfo,
    Prompt,
    SamplingSettings,
    TokenLogprob,
)
from orchestrator.errors import ModelNotFoundError

if TYPE_CHECKING:  # settings import the engine options from this package
    from orchestrator.settings import Settings

__all__ = [
    "BackendCounters",
    "Completion",
    "GenerationBackend",
    "GenerationResult",
    "ModelInfo",
    "Prompt",
    "SamplingSettings",
    "TokenLogprob",
    "open_backend",
    "resolve_model",
]


def resolve_model(settings: Settings) -> str:
    """The model to load: the embedded default (pulled on first use), a local directory or a hub name."""
    if settings.uses_embedded_model:
        from orchestrator.embedded_model import ensure_embedded_model

        return str(ensure_embedded_model(settings.model_cache_dir))
    path = Path(settings.model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"TTC_MODEL={settings.model} is a path without config.json; point it at a model")
        return str(path)
    if settings.model.startswith(("/", ".", "~")) or settings.model.count("/") != 1:
        raise ModelNotFoundError(
            f"TTC_MODEL={settings.model!r} is neither an existing model directory nor a hub name like 'org/model'; "
            "fix TTC_MODEL or leave it empty for the embedded SmolLM2-135M-Instruct"
        )
    return settings.model


async def open_backend(settings: Settings) -> GenerationBackend:
    """Build and start the configured backend; errors name the setting to fix."""
    if settings.backend == "remote":
        from orchestrator.backends.remote import RemoteBackend

        return await RemoteBackend.connect(
            settings.remote_urls,
            tokenizer=settings.tokenizer or settings.model,
            served_model=settings.remote_model_name,
            timeout_s=settings.remote_timeout_s,
            api_key=settings.remote_api_key,
        )
    from orchestrator.backends.inprocess import InProcessBackend

    return await InProcessBackend.start(resolve_model(settings), settings.engine.to_options(), settings.tokenizer)

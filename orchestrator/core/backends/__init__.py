"""Generation backends: the only code that knows vLLM.

``BACKENDS`` names each implementation; ``open_backend(settings)`` starts the one
``TTC_BACKEND`` names. A new backend is one file (a ``GenerationBackend`` with an
``open(settings)`` classmethod) and one row here.
"""

from __future__ import annotations

from orchestrator.core.backends.base import (
    BackendCounters,
    Completion,
    GenerationBackend,
    GenerationResult,
    ModelInfo,
    Prompt,
    SamplingSettings,
    TokenLogprob,
)
from orchestrator.core.backends.inprocess import InProcessBackend, resolve_model
from orchestrator.core.backends.remote import RemoteBackend
from orchestrator.core.errors import ConfigurationError
from orchestrator.core.settings import Settings

__all__ = [
    "BACKENDS",
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

BACKENDS: dict[str, type[GenerationBackend]] = {
    "inprocess": InProcessBackend,  # vLLM AsyncLLM in this process: the embedded CPU default, or one GPU
    "remote": RemoteBackend,  # vLLM OpenAI-compatible servers over HTTP
}


async def open_backend(settings: Settings) -> GenerationBackend:
    """Build and start the configured backend; errors name the setting to fix."""
    try:
        backend = BACKENDS[settings.backend]
    except KeyError:
        raise ConfigurationError(
            f"TTC_BACKEND={settings.backend!r} is not a backend; choose one of {sorted(BACKENDS)}"
        ) from None
    return await backend.open(settings)

"""The embedded engine for a benchmark: the in-process backend and the verifiers, built once, closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from orchestrator.core.backends.inprocess import InProcessBackend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.embedded_model import ensure_embedded_model
from orchestrator.core.session import Session
from orchestrator.core.settings import EngineOptions, Settings
from verifiers.registry import VerifierSet


@dataclass
class Engine:
    """A started backend and the verifiers sessions on it use."""

    backend: InProcessBackend
    verifiers: VerifierSet

    def session(self, budget: Budget) -> Session:
        """A fresh session (its own meter, which ``session.meter`` reads back) under ``budget``."""
        return Session(self.backend, BudgetMeter(budget, self.backend.model.shape), verifiers=self.verifiers)


@asynccontextmanager
async def embedded_engine(**options: Any) -> AsyncIterator[Engine]:
    """Start SmolLM2-135M in process (``options`` are ``EngineOptions`` fields; 2 GiB of KV cache by default)."""
    settings = Settings()
    model = ensure_embedded_model(settings.model_cache_dir)
    backend = await InProcessBackend.start(str(model), EngineOptions(**{"cpu_kv_cache_space_gib": 2, **options}))
    verifiers = VerifierSet.build(settings)
    try:
        yield Engine(backend, verifiers)
    finally:
        await verifiers.aclose()
        await backend.aclose()

"""Sessions for tests that run strategies or verifiers without a runtime."""

from __future__ import annotations

from orchestrator.core.backends.base import GenerationBackend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.model_catalog import model_identity
from orchestrator.core.session import Session
from orchestrator.core.settings import PrmOptions, Settings
from strategies.policy import served_policy
from verifiers.registry import VerifierSet

# Built once, as a runtime would; with no PRM configured nothing in it holds a connection.
VERIFIERS = VerifierSet.build(Settings(prm=PrmOptions()))


def new_session(backend: GenerationBackend, meter: BudgetMeter | None = None) -> Session:
    """A session on ``backend`` with the offline verifiers, ``meter`` (default: no limits) and, as a
    runtime would choose it, the shipped routing policy of the backend's model if there is one."""
    model = model_identity(backend.model.name)
    return Session(
        backend,
        meter or BudgetMeter(Budget()),
        verifiers=VERIFIERS,
        embedder=VERIFIERS.embedder,
        served_model=model,
        routing_policy=served_policy(model),
    )

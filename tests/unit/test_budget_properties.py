"""The budget promise, for every strategy: whatever the limits and however many branches spend
one meter at once, a request never computes more tokens than ``max_tokens`` — the meter
reserves each call's whole prompt and completions before the call starts.

Scripted backend (one token per character, a perfect prefix cache): this is meter logic."""

from __future__ import annotations

import hashlib

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.errors import BudgetExceededError
from strategies.base import REGISTRY
from tests.sessions import new_session

STEPS = ["3 + 4 = 7", "7 * 2 = 14", "14 - 5 = 9", "The answer is 9."]
PARAMS = {  # small widths so an example stays fast; the budget, not the params, is under test
    "best_of_n": {"n": 6, "max_tokens": 60},
    "beam_search": {"width": 2, "samples_per_beam": 2, "max_steps": 4, "step_max_tokens": 24},
    "dvts": {"width": 2, "samples_per_beam": 2, "max_steps": 4, "step_max_tokens": 24},
    "rebase": {"width": 4, "max_steps": 4, "step_max_tokens": 24},
    "ets": {"width": 4, "max_steps": 4, "step_max_tokens": 24},
    "spawn_join": {"thread_max_tokens": 48},
    "direct": {"max_tokens": 60},
    "auto": {
        "policy": {
            "version": "t",
            "model": "scripted",
            "sampling": {"max_tokens": 32, "typical_tokens": 20},
            "rules": [{"min_tokens": 0, "allocation": {"first_wave": 2, "wave": 2, "max_samples": 6}}],
        }
    },
    "probe": {"probe_samples": 2, "probe_max_tokens": 32},
}


def varied_steps(prompt: str, sampling) -> list[str]:
    """Completions whose length depends on the prompt and sample: some short, some cut off."""
    texts = []
    for index in range(sampling.n):
        seed = int(hashlib.sha256(f"{prompt}|{index}".encode()).hexdigest()[:8], 16)
        count = 1 + seed % len(STEPS)
        texts.append("\n\n".join(STEPS[:count]) + ("\n\n" if count < len(STEPS) else ""))
    return texts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from(sorted(PARAMS)),
    max_tokens=st.integers(min_value=1, max_value=900),
    forks=st.integers(min_value=1, max_value=4),
)
def test_no_strategy_computes_more_than_its_token_budget(strategy: str, max_tokens: int, forks: int) -> None:
    backend = ScriptedBackend(varied_steps, delay_s=lambda prompt: 0.001 * (len(prompt) % 7))
    meter = BudgetMeter(Budget(max_tokens=max_tokens), backend.model.shape)
    chosen = REGISTRY[strategy]
    params = chosen.parse_params(PARAMS[strategy])

    async def run_fork() -> None:  # forks of one request: one meter, spending at once
        try:
            await chosen.run("What is (3 + 4) * 2 - 5?", new_session(backend, meter), params)
        except BudgetExceededError:
            pass

    async def run_all() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(forks):
                group.start_soon(run_fork)

    anyio.run(run_all)
    assert meter.usage.compute_tokens <= max_tokens, (strategy, meter.usage)
    assert meter.remaining_tokens() == max_tokens - meter.usage.compute_tokens  # every reservation released

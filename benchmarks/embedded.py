"""The embedded engine for a benchmark: the in-process backend and the verifiers, built once, closed together."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio

from harness.reward_data import solution_steps
from orchestrator.core.backends.inprocess import InProcessBackend
from orchestrator.core.backends.pooling import InProcessPooler
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.model_catalog import ensure_model
from orchestrator.core.session import Session
from orchestrator.core.settings import EngineOptions, Settings
from orchestrator.core.verification import PolicyModel, ScoreRequest, aggregate
from verifiers.base import SharedModels
from verifiers.prm import OutcomeRewardModel, ProcessRewardModel
from verifiers.registry import VerifierSet
from verifiers.reward import ServedRewardModel, load_reward_meta, open_reward_model


@dataclass
class Engine:
    """A started backend and the verifiers sessions on it use."""

    backend: InProcessBackend
    verifiers: VerifierSet

    def session(self, budget: Budget) -> Session:
        """A fresh session (its own meter, which ``session.meter`` reads back) under ``budget``."""
        meter = BudgetMeter(budget, self.backend.model.shape)
        return Session(self.backend, meter, verifiers=self.verifiers, embedder=self.verifiers.embedder)


@asynccontextmanager
async def embedded_engine(**options: Any) -> AsyncIterator[Engine]:
    """Start TTC_MODEL (default qwen2.5-coder-0.5b) and TTC_REWARD__MODEL (if set) in process
    (``options`` are ``EngineOptions`` fields; 2 GiB of KV cache by default)."""
    settings = Settings()
    model = ensure_model(settings.model_cache_dir, settings.model)
    backend = await InProcessBackend.start(str(model), EngineOptions(**{"cpu_kv_cache_space_gib": 2, **options}))
    try:
        reward = await open_reward_model(settings, settings.model)  # TTC_REWARD__MODEL, if set
        verifiers = VerifierSet.build(settings, reward)
        try:
            yield Engine(backend, verifiers)
        finally:
            await verifiers.aclose()
            if reward is not None:
                await reward.scorer.aclose()
    finally:
        await backend.aclose()


# The reward-model verifiers score on their own engine and never call the policy model.
NO_POLICY = cast(PolicyModel, None)


@dataclass
class RewardScorers:
    """A trained reward model read through the service's own ``orm`` and ``prm`` verifiers, so a
    benchmark's scores are the ones a strategy would get for the same sample."""

    meta: dict[str, Any]
    orm: OutcomeRewardModel
    prm: ProcessRewardModel

    async def outcome(self, question: str, text: str) -> float:
        """The ``orm`` verifier's score of a finished sample (0 for one with no steps, as online)."""
        [row] = await self.orm.score([ScoreRequest(question, solution_steps(text))], NO_POLICY)
        return aggregate(row, "last")

    async def steps(self, question: str, text: str) -> list[float]:
        """The ``prm`` verifier's score after each step of a sample."""
        [row] = await self.prm.score([ScoreRequest(question, solution_steps(text))], NO_POLICY)
        return row


@asynccontextmanager
async def reward_scorers(directory: Path) -> AsyncIterator[RewardScorers]:
    """Start the reward model in ``directory`` on the pooling engine, as ``TTC_REWARD__MODEL`` would.

    Example: ``async with reward_scorers(Path("runs/orm")) as reward: await reward.outcome(q, text)``.
    """
    meta = load_reward_meta(directory)
    pooler = await InProcessPooler.start(Path(await anyio.Path(directory).resolve()), int(meta["step_tag_id"]))
    served = ServedRewardModel(pooler, meta, directory)
    try:
        settings, shared = Settings(), SharedModels(reward=served)
        orm = OutcomeRewardModel.from_settings(settings, shared)
        yield RewardScorers(meta, orm, ProcessRewardModel.from_settings(settings, shared))
    finally:
        await pooler.aclose()


Item = TypeVar("Item")


def stored_ids(path: Path) -> set[str]:
    """The ``id`` of every JSON line already in ``path``: what a resumed run skips."""
    return {json.loads(line)["id"] for line in path.read_text().splitlines()} if path.exists() else set()


async def append_each(
    todo: Sequence[Item], work: Callable[[Item], Awaitable[dict]], out: Path, concurrency: int
) -> None:
    """Run ``work`` on every item, ``concurrency`` at once (keeping the engine's batch full), appending
    each record to ``out`` as a JSON line as soon as it is done; progress every ten."""
    limiter = anyio.Semaphore(concurrency)
    started, finished = time.monotonic(), 0

    async def one(item: Item) -> None:
        nonlocal finished
        async with limiter:
            record = await work(item)
        with out.open("a") as file:
            file.write(json.dumps(record) + "\n")
        finished += 1
        if finished % 10 == 0:
            print(f"  {finished}/{len(todo)} in {time.monotonic() - started:.0f} s", flush=True)

    async with anyio.create_task_group() as group:
        for item in todo:
            group.start_soon(one, item)

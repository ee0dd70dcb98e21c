"""A sweep's records and where they are kept: Redis (resumable), exported to JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from harness.passes import SamplePass
from orchestrator.core.errors import InvalidRequestError
from orchestrator.core.store import Store


class SweepResult(BaseModel):
    """One (item, strategy, params, budget, seed) point of a sweep."""

    item_id: str
    grade: int
    strategy: str = Field(description="the configuration's label (strategy name plus params)")
    strategy_name: str
    params: dict[str, Any]
    budget: int = Field(description="the compute-token budget of the attempt")
    seed: int
    correct: bool
    answer: str | None
    status: str
    compute_tokens: int
    completion_tokens: int
    flops: float
    eflops: float | None = Field(None, description="Kinetics eFLOPs (None: stored before sweeps kept them)")
    kv_footprint_tokens: int
    latency_s: float
    budget_exhausted: str | None = None
    derived: bool = Field(False, description="selected from a stored best-of-N pass (no generation of its own)")
    error: str | None = None

    @property
    def key(self) -> str:
        return unit_key(self.item_id, self.strategy, self.budget, self.seed)


class ProbeFeatures(BaseModel):
    """What the difficulty probe saw for one item: the router's online features."""

    item_id: str
    difficulty: float
    agreement: float
    settled: bool
    compute_tokens: int
    prompt_tokens: int = Field(0, description="uncached prompt tokens of the probe's request")


def unit_key(item_id: str, label: str, budget: int, seed: int) -> str:
    """The field a result is stored under; the label already encodes strategy and params."""
    return f"{item_id}|{label}|{budget}|{seed}"


DUMP_FORMAT = "ttc-sweep-dump/1"


class SweepStore:
    """One sweep's spec, results, probes and best-of-N passes in Redis (keys from ``Keys``)."""

    def __init__(self, store: Store, sweep: str) -> None:
        self.redis = store.redis
        self.sweep = sweep
        self.keys = store.keys
        store.keys.sweep_spec(sweep)  # validates the name early

    async def save_spec(self, spec: dict[str, Any]) -> None:
        await self.redis.set(self.keys.sweep_spec(self.sweep), json.dumps(spec))

    async def spec(self) -> dict[str, Any] | None:
        raw = await self.redis.get(self.keys.sweep_spec(self.sweep))
        return json.loads(raw) if raw else None

    async def done_keys(self) -> set[str]:
        return set(await self.redis.hkeys(self.keys.sweep_results(self.sweep)))

    async def save_results(self, results: list[SweepResult]) -> None:
        if results:
            mapping = {result.key: result.model_dump_json() for result in results}
            await self.redis.hset(self.keys.sweep_results(self.sweep), mapping=mapping)

    async def results(self) -> list[SweepResult]:
        raw = await self.redis.hvals(self.keys.sweep_results(self.sweep))
        return sorted((SweepResult.model_validate_json(r) for r in raw), key=lambda r: r.key)

    async def save_probe(self, features: ProbeFeatures) -> None:
        await self.redis.hset(self.keys.sweep_probes(self.sweep), features.item_id, features.model_dump_json())

    async def probes(self) -> dict[str, ProbeFeatures]:
        raw = await self.redis.hgetall(self.keys.sweep_probes(self.sweep))
        return {item: ProbeFeatures.model_validate_json(value) for item, value in raw.items()}

    async def save_pass(self, key: str, sample_pass: SamplePass) -> None:
        await self.redis.hset(self.keys.sweep_passes(self.sweep), key, sample_pass.model_dump_json())

    async def sample_pass(self, key: str) -> SamplePass | None:
        raw = await self.redis.hget(self.keys.sweep_passes(self.sweep), key)
        return SamplePass.model_validate_json(raw) if raw else None

    async def passes(self) -> dict[str, str]:
        """Every stored best-of-N pass: ``item|params digest|seed`` to its JSON."""
        return await self.redis.hgetall(self.keys.sweep_passes(self.sweep))

    async def dump(self) -> dict[str, Any]:
        """Everything stored under the sweep's name, as one JSON-able record (``restore`` reads it back)."""
        return {
            "format": DUMP_FORMAT,
            "sweep": self.sweep,
            "spec": await self.spec(),
            "results": await self.redis.hgetall(self.keys.sweep_results(self.sweep)),
            "probes": await self.redis.hgetall(self.keys.sweep_probes(self.sweep)),
            "passes": await self.passes(),
        }

    async def restore(self, dumped: dict[str, Any]) -> int:
        """Store a ``dump`` under this name (points already here are kept as they are); the points added.

        A sweep moved to another machine this way resumes where it stopped.
        """
        if dumped.get("format") != DUMP_FORMAT or not isinstance(dumped.get("spec"), dict):
            raise InvalidRequestError(f"not a sweep dump of this ttc (format {dumped.get('format')!r})")
        added = 0
        for part, key in (
            ("results", self.keys.sweep_results(self.sweep)),
            ("probes", self.keys.sweep_probes(self.sweep)),
            ("passes", self.keys.sweep_passes(self.sweep)),
        ):
            for field, value in dumped[part].items():
                added += await self.redis.hsetnx(key, field, value)
        if await self.spec() is None:
            await self.save_spec(dumped["spec"])
        return added


def export_jsonl(results: list[SweepResult], probes: dict[str, ProbeFeatures], path: Path) -> Path:
    """One JSON object per result, with the item's probe features alongside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for result in results:
            probe = probes.get(result.item_id)
            row = result.model_dump() | {"difficulty": probe.difficulty if probe else None}
            out.write(json.dumps(row) + "\n")
    return path

"""``ttc sweep``: a dataset x strategy configurations x token budgets, resumable.

Every point (item, strategy, params, budget, seed) is stored in Redis as soon as it is
done; a rerun with the same sweep name skips stored points. Each item is probed once
(the same probe ``auto`` runs online), which gives the difficulty the report bins by and
the router is fitted on.

Best-of-N uses one generation pass per item (search-and-learn's trick): N samples are
drawn once with no budget, and the point at budget B re-selects among the longest
prefix of samples whose compute tokens fit in B. The FLOPs of such a derived point are the
pass's scaled by its share of the pass's compute tokens; its latency is the pass's (one
batched request takes about as long as its longest sample).

Attempts run with their token budget and no practical deadline, so results do not depend
on this machine's speed. A unit that fails (engine or network) is not stored: rerun to retry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.catalog import Split
from harness.datasets import Problem
from harness.grading import is_correct
from harness.passes import SamplePass
from harness.results import ProbeFeatures, SweepResult, SweepStore, unit_key
from harness.solvers import Attempt, Solver
from orchestrator.core.admission import StreamSlots
from orchestrator.core.budget import Budget
from orchestrator.core.errors import InvalidRequestError
from orchestrator.core.settings import RequestLimits
from orchestrator.core.store.keys import Keys
from strategies import REGISTRY
from strategies.base import parallel_streams
from strategies.probe import ProbeParams
from strategies.selection import Rule, choose

# Probes and best-of-N passes must not be cut by the service's default request limits: they ask
# for the default ceilings (``RequestLimits``), as much as a service allows unless its operator
# lowered them. Attempts are bounded by their token budget, not by this machine's speed.
CEILINGS = RequestLimits()
UNLIMITED = Budget(max_tokens=CEILINGS.max_tokens, deadline_s=CEILINGS.deadline_s)
NO_DEADLINE_S = CEILINGS.deadline_s
log = logging.getLogger(__name__)


class StrategySpec(BaseModel):
    """One configuration to sweep: a strategy and its params."""

    model_config = ConfigDict(extra="forbid")

    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_and_valid(self) -> StrategySpec:
        if self.strategy not in REGISTRY:
            raise ValueError(f"unknown strategy {self.strategy!r}: use one of {', '.join(sorted(REGISTRY))}")
        try:
            REGISTRY[self.strategy].parse_params(self.params)
        except InvalidRequestError as error:  # as a ValueError, pydantic reports it with the spec's path
            raise ValueError(str(error)) from None
        return self

    @property
    def label(self) -> str:
        """``name`` or ``name{k=v,...}``: readable, and unique per params (a nested value such as an
        inline routing policy appears as its digest)."""
        if not self.params:
            return self.strategy
        inner = ",".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
        return f"{self.strategy}{{{inner}}}"

    @property
    def uses_one_pass(self) -> bool:
        return self.strategy == "best_of_n"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    if isinstance(value, dict | list) and len(text) > 40:
        return "#" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return text


class SweepSpec(BaseModel):
    """What to sweep. ``name`` keys its results in Redis: reuse it to resume."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: str = Field("", description="the served model's catalogue name; set when the sweep runs")
    dataset: str = "arithmetic"
    split: Split = "dev"
    limit: int = Field(20, ge=1)
    data_seed: int = 0
    strategies: list[StrategySpec] = Field(min_length=1)
    budgets: list[int] = Field(default_factory=lambda: [256, 512, 1024, 2048], min_length=1)
    seeds: int = Field(1, ge=1, le=16, description="repeats of every point (sampling is not seeded)")
    concurrency: int = Field(64, ge=1, le=1024, description="units (attempts, passes, probes) in flight at most")
    streams: int = Field(
        128, ge=1, le=4096, description="sequences the units in flight decode at once: keeps the engine's batch full"
    )
    probe: ProbeParams = Field(default_factory=ProbeParams)

    @field_validator("name")
    @classmethod
    def _usable_name(cls, name: str) -> str:
        Keys().sweep_spec(name)  # raises on a name Redis keys cannot carry
        return name

    @field_validator("budgets")
    @classmethod
    def _powers_of_two(cls, budgets: list[int]) -> list[int]:
        bad = [b for b in budgets if b < 1 or b & (b - 1)]
        if bad:
            raise ValueError(f"budgets must be powers of two (e.g. 256,512,1024), not {bad}")
        return sorted(set(budgets))


class Sweep:
    """Runs a ``SweepSpec`` with a ``Solver``, storing each point as it finishes."""

    def __init__(self, spec: SweepSpec, solver: Solver, results: SweepStore) -> None:
        self.spec = spec
        self.solver = solver
        self.results = results
        self.limiter = anyio.CapacityLimiter(spec.concurrency)
        self.streams = StreamSlots(spec.streams)
        self._pass_locks: dict[str, anyio.Lock] = {}

    async def run(
        self, problems: list[Problem], on_progress: Callable[[int, int], None] | None = None
    ) -> list[SweepResult]:
        """Run every point not stored yet; ``on_progress(done, total)`` after each unit of work.

        ``problems`` are the spec's items (``load_dataset(spec.dataset, spec.split, ...)``).
        A unit that fails (an engine or network error) is logged and left unstored, so a
        rerun retries it; ``self.failures`` holds what failed. Returns the spec's points
        (results stored under this name for other items, configurations or budgets are left out).
        """
        await self.results.save_spec(self.spec.model_dump())
        units = await self._pending_units(problems)
        finished = 0
        self.failures: list[str] = []
        if on_progress:
            on_progress(0, len(units))

        async def run_unit(streams: int, unit: Callable[[], Any]) -> None:
            nonlocal finished
            async with self.limiter, self.streams.hold(streams):
                try:
                    await unit()
                except Exception as error:  # one unit's failure must not cancel the others
                    log.warning("sweep unit failed (a rerun retries it): %s: %s", type(error).__name__, error)
                    self.failures.append(f"{type(error).__name__}: {error}")
            finished += 1
            if on_progress:
                on_progress(finished, len(units))

        async with anyio.create_task_group() as group:
            for streams, unit in units:
                group.start_soon(run_unit, streams, unit)
        wanted = self._unit_keys(problems)
        return [result for result in await self.results.results() if result.key in wanted]

    def _unit_keys(self, problems: list[Problem]) -> set[str]:
        return {
            unit_key(problem.id, config.label, budget, seed)
            for seed in range(self.spec.seeds)
            for problem in problems
            for config in self.spec.strategies
            for budget in self.spec.budgets
        }

    async def pending(self, problems: list[Problem]) -> int:
        """How many units (probes, passes, attempts) are not stored yet."""
        return len(await self._pending_units(problems))

    async def _pending_units(self, problems: list[Problem]) -> list[tuple[int, Callable[[], Any]]]:
        """Every unit not stored yet, with the sequences it decodes at once."""
        done = await self.results.done_keys()
        probed = await self.results.probes()
        probe_streams = parallel_streams(self.spec.probe)
        units: list[tuple[int, Callable[[], Any]]] = [
            (probe_streams, lambda p=problem: self._probe(p)) for problem in problems if problem.id not in probed
        ]
        for seed in range(self.spec.seeds):
            for problem in problems:
                for config in self.spec.strategies:
                    missing = [b for b in self.spec.budgets if unit_key(problem.id, config.label, b, seed) not in done]
                    if not missing:
                        continue
                    streams = parallel_streams(REGISTRY[config.strategy].parse_params(config.params))
                    if config.uses_one_pass:
                        units.append(
                            (streams, lambda p=problem, c=config, s=seed, m=missing: self._best_of_n(p, c, s, m))
                        )
                    else:
                        units += [
                            (streams, lambda p=problem, c=config, s=seed, b=budget: self._attempt(p, c, s, b))
                            for budget in missing
                        ]
        return units

    async def _probe(self, problem: Problem) -> None:
        attempt = await self.solver.solve(problem.question, "probe", self.spec.probe.model_dump(), UNLIMITED)
        _raise_unless_usable(attempt, "probe")
        seen = attempt.trace["probe"]
        usage = attempt.usage
        await self.results.save_probe(
            ProbeFeatures(
                item_id=problem.id,
                difficulty=seen["difficulty"],
                agreement=seen["agreement"],
                settled=seen.get("settled", False),
                compute_tokens=usage.compute_tokens,
                prompt_tokens=usage.prompt_tokens - usage.cached_prompt_tokens,
            )
        )

    async def _attempt(self, problem: Problem, config: StrategySpec, seed: int, budget: int) -> None:
        attempt = await self.solver.solve(
            problem.question, config.strategy, config.params, Budget(max_tokens=budget, deadline_s=NO_DEADLINE_S)
        )
        if attempt.status == "failed" and (attempt.error or {}).get("code") != "budget_exceeded":
            _raise_unless_usable(attempt, config.label)  # an engine failure is no result: retried on resume
        await self.results.save_results([_result_of(problem, config, seed, budget, attempt)])

    async def _best_of_n(self, problem: Problem, config: StrategySpec, seed: int, budgets: list[int]) -> None:
        sample_pass = await self._sample_pass(problem, config, seed)
        selection = config.params.get("selection", "majority")
        await self.results.save_results(
            [_derived_result(problem, config, seed, budget, sample_pass, selection) for budget in budgets]
        )

    async def _sample_pass(self, problem: Problem, config: StrategySpec, seed: int) -> SamplePass:
        """N samples of the item, all scored, drawn once for every selection and budget."""
        params = REGISTRY["best_of_n"].parse_params(config.params).model_dump()
        params |= {"selection": "weighted", "adaptive": False}
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        key = f"{problem.id}|{digest}|{seed}"
        async with self._pass_locks.setdefault(key, anyio.Lock()):
            stored = await self.results.sample_pass(key)
            if stored is not None:
                return stored
            attempt = await self.solver.solve(problem.question, "best_of_n", params, UNLIMITED)
            _raise_unless_usable(attempt, "best-of-N pass")
            samples = attempt.trace.get("samples", [])
            if len(samples) < params["n"] or attempt.usage.budget_exhausted:
                raise RuntimeError(f"the best-of-N pass drew {len(samples)} of {params['n']} samples")
            sample_pass = SamplePass(usage=attempt.usage, samples=samples)
            await self.results.save_pass(key, sample_pass)
            return sample_pass


def _raise_unless_usable(attempt: Attempt, what: str) -> None:
    if attempt.status != "succeeded":
        message = (attempt.error or {}).get("message", attempt.status)
        raise RuntimeError(f"{what} did not succeed: {message}")


def _result_of(problem: Problem, config: StrategySpec, seed: int, budget: int, attempt: Attempt) -> SweepResult:
    usage = attempt.usage
    return SweepResult(
        item_id=problem.id,
        grade=problem.grade,
        strategy=config.label,
        strategy_name=config.strategy,
        params=config.params,
        budget=budget,
        seed=seed,
        correct=attempt.status == "succeeded" and is_correct(problem, attempt.answer, attempt.output),
        answer=attempt.answer,
        status=attempt.status,
        compute_tokens=usage.compute_tokens,
        completion_tokens=usage.completion_tokens,
        flops=usage.flops,
        eflops=usage.eflops,
        kv_footprint_tokens=usage.kv_footprint_tokens or usage.prompt_tokens + usage.completion_tokens,
        latency_s=usage.wall_time_s,
        budget_exhausted=usage.budget_exhausted,
        error=(attempt.error or {}).get("message"),
    )


def _derived_result(
    problem: Problem, config: StrategySpec, seed: int, budget: int, sample_pass: SamplePass, selection: Rule
) -> SweepResult:
    """The budget-``budget`` point of best-of-N, selected from the longest affordable prefix."""
    usage = sample_pass.usage
    prefix, spent = sample_pass.within(budget)
    taken = len(prefix)
    chosen = choose(prefix, selection)
    output = chosen.sample.text if chosen.sample else ""
    share = spent / max(1, sample_pass.prompt_compute + sum(sample_pass.lengths))
    completion = spent - sample_pass.prompt_compute
    return SweepResult(
        item_id=problem.id,
        grade=problem.grade,
        strategy=config.label,
        strategy_name=config.strategy,
        params=config.params | {"n": taken},
        budget=budget,
        seed=seed,
        correct=bool(prefix) and is_correct(problem, chosen.answer, output),
        answer=chosen.answer,
        status="succeeded",
        compute_tokens=spent,
        completion_tokens=completion,
        flops=usage.flops * share,
        eflops=usage.eflops * share,  # a token share: KV reads are not split exactly
        kv_footprint_tokens=usage.prompt_tokens + completion,
        latency_s=usage.wall_time_s,  # one batched request: about the pass's time, not a share of it
        budget_exhausted="tokens" if taken < len(sample_pass.samples) else None,
        derived=True,
    )

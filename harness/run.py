"""Running a sweep end to end (engine or service, Redis, files) and fitting the router from one.

``ttc sweep`` and ``ttc fit-router`` are thin wrappers over ``run_sweep`` and ``fit_router``;
tests call these directly.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.catalog import load_dataset
from harness.fit import Efficiency, efficiency, fit_policy
from harness.learned import refuse_trained_items
from harness.report import write_report
from harness.results import ProbeFeatures, SweepResult, SweepStore, export_jsonl
from harness.solvers import InProcessSolver, ServiceSolver, Solver
from harness.sweep import StrategySpec, Sweep, SweepSpec
from orchestrator.core.errors import InvalidRequestError
from orchestrator.core.settings import Settings
from orchestrator.core.store import Store, open_redis
from orchestrator.runtime import Runtime
from strategies.policy import Policy, load_policy
from verifiers.learned import load_artifact

Progress = Callable[[int, int], None]


@dataclass
class SweepOutcome:
    """What a finished sweep left behind."""

    results: list[SweepResult]
    probes: dict[str, ProbeFeatures]
    jsonl: Path
    report: Path
    seconds: float
    failures: list[str]


@asynccontextmanager
async def _solver_and_store(
    settings: Settings, server: str | None, api_key: str | None, runtime: Runtime | None
) -> AsyncIterator[tuple[Solver, Store]]:
    """In process: ``runtime``, else the engine and Redis of ``settings``. With ``server``: the SDK,
    plus local Redis for the results."""
    if runtime is not None:
        yield InProcessSolver(runtime), runtime.store
        return
    if server is None:
        async with Runtime.open(settings) as runtime:
            yield InProcessSolver(runtime), runtime.store
        return
    from ttc import AsyncClient

    connection = await open_redis(settings.redis_url, settings.data_dir)
    try:
        async with AsyncClient(base_url=server, api_key=api_key, timeout=3600) as client:
            yield ServiceSolver(client), Store(connection, settings.redis_namespace)
    finally:
        await connection.aclose()


async def run_sweep(
    spec: SweepSpec,
    out_dir: Path,
    settings: Settings,
    *,
    server: str | None = None,
    api_key: str | None = None,
    runtime: Runtime | None = None,
    on_progress: Progress | None = None,
    title: str | None = None,
    extra_sections: Callable[[list[SweepResult]], list[str]] | None = None,
) -> SweepOutcome:
    """Run (or resume) ``spec``, then export ``results.jsonl`` and write the report into ``out_dir``.

    Attempts run on ``runtime`` if given, else through the SDK against ``server`` if given,
    else on an engine started from ``settings``.
    """
    started = time.monotonic()
    problems = load_dataset(spec.dataset, spec.split, spec.limit, spec.data_seed)  # bad data fails before the engine
    if any(config.params.get("verifier") == "learned" for config in spec.strategies):
        if settings.learned_verifier is None:
            raise InvalidRequestError("the sweep uses the learned verifier: set TTC_LEARNED_VERIFIER")
        trained = frozenset(load_artifact(settings.learned_verifier)["meta"]["items"])
        refuse_trained_items([p.id for p in problems], trained, f"sweep {spec.name}")
    async with _solver_and_store(settings, server, api_key, runtime) as (solver, store):
        results_store = SweepStore(store, spec.name)
        sweep = Sweep(spec, solver, results_store)
        results = await sweep.run(problems, on_progress)
        probes = await results_store.probes()
    jsonl = export_jsonl(results, probes, out_dir / "results.jsonl")
    edges = _report_edges(spec)
    sections = extra_sections(results) if extra_sections else []
    report = write_report(out_dir, title or f"Sweep {spec.name}", spec.model_dump(), results, probes, edges, sections)
    return SweepOutcome(results, probes, jsonl, report, time.monotonic() - started, sweep.failures)


def _report_edges(spec: SweepSpec) -> list[float]:
    """Bin edges for the report: those of the policy being evaluated, else the default policy's."""
    for config in spec.strategies:
        if config.strategy == "auto" and config.params.get("policy"):
            return Policy.model_validate(config.params["policy"]).difficulty_bins
    return load_policy().difficulty_bins


async def load_sweep(
    name: str, settings: Settings, store: Store | None = None
) -> tuple[SweepSpec, list[SweepResult], dict[str, ProbeFeatures]]:
    """A stored sweep's spec, results and probes (no engine needed)."""
    if store is not None:
        return await _read_sweep(SweepStore(store, name))
    connection = await open_redis(settings.redis_url, settings.data_dir)
    try:
        return await _read_sweep(SweepStore(Store(connection, settings.redis_namespace), name))
    finally:
        await connection.aclose()


async def load_sweep_passes(name: str, settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """A stored sweep's spec and its best-of-N passes (no engine needed)."""
    connection = await open_redis(settings.redis_url, settings.data_dir)
    try:
        stored = SweepStore(Store(connection, settings.redis_namespace), name)
        spec = await stored.spec()
        if spec is None:
            raise InvalidRequestError(f"no sweep named {name!r} in this Redis: run `ttc sweep --name` first")
        return spec, await stored.passes()
    finally:
        await connection.aclose()


async def _read_sweep(stored: SweepStore) -> tuple[SweepSpec, list[SweepResult], dict[str, ProbeFeatures]]:
    """The sweep's latest spec and only its points (a rerun with fewer configurations or budgets
    leaves older points stored under the name; they are not part of this sweep)."""
    raw_spec = await stored.spec()
    if raw_spec is None:
        raise InvalidRequestError(f"no sweep named {stored.sweep!r} in this Redis: run `ttc sweep --name` first")
    spec = SweepSpec.model_validate(raw_spec)
    labels, budgets = {c.label for c in spec.strategies}, set(spec.budgets)
    results = [
        r for r in await stored.results() if r.strategy in labels and r.budget in budgets and r.seed < spec.seeds
    ]
    return spec, results, await stored.probes()


@dataclass
class FitOutcome:
    """The fitted policy file and, if evaluated, the test-split comparison."""

    policy_path: Path
    policy: Policy
    evaluation: SweepOutcome | None
    efficiency: list[Efficiency]


async def fit_router(
    sweep_name: str,
    policy_path: Path,
    settings: Settings,
    *,
    bins: int = 3,
    evaluate: bool = True,
    eval_limit: int | None = None,
    out_dir: Path | None = None,
    server: str | None = None,
    api_key: str | None = None,
    runtime: Runtime | None = None,
    on_progress: Progress | None = None,
) -> FitOutcome:
    """Fit the policy from the dev sweep ``sweep_name``; then (``evaluate``) sweep ``auto`` with it
    against best-of-N majority on the test split, at the same budgets, and report the efficiency."""
    spec, results, probes = await load_sweep(sweep_name, settings, runtime.store if runtime else None)
    if not results:
        raise InvalidRequestError(f"sweep {sweep_name!r} has no results yet: run it first")
    policy = fit_policy(results, probes, bins=bins, source=sweep_name, probe=spec.probe)
    policy_path = policy_path.resolve()  # noqa: ASYNC240 (a local file, before any engine work)
    _write_checked_policy(policy, policy_path)
    if not evaluate:
        return FitOutcome(policy_path, policy, None, [])
    evaluated = [
        policy.model_dump(mode="json")["table"],
        policy.difficulty_bins,
        spec.probe.model_dump(),
        eval_limit or spec.limit,
    ]
    policy_digest = hashlib.sha256(json.dumps(evaluated, sort_keys=True).encode()).hexdigest()[:8]
    test_spec = SweepSpec(
        name=f"{sweep_name}-test-{policy_digest}",  # a refit policy is evaluated afresh, never resumed
        dataset=spec.dataset,
        split="test",
        limit=eval_limit or spec.limit,
        data_seed=spec.data_seed,
        strategies=[
            StrategySpec(strategy="auto", params={"policy": policy.model_dump(mode="json"), **spec.probe.model_dump()}),
            StrategySpec(strategy="best_of_n", params={"selection": "majority", "n": _baseline_samples(spec)}),
        ],
        budgets=spec.budgets,
        seeds=spec.seeds,
        concurrency=spec.concurrency,
        probe=spec.probe,
    )
    rows: list[Efficiency] = []

    def efficiency_section(test_results: list[SweepResult]) -> list[str]:
        rows.extend(_compare(test_results))
        return [efficiency_markdown(rows, policy)]

    evaluation = await run_sweep(
        test_spec,
        out_dir or Path("runs") / test_spec.name,
        settings,
        server=server,
        api_key=api_key,
        runtime=runtime,
        on_progress=on_progress,
        title=f"Router fitted on {sweep_name}, evaluated on the test split",
        extra_sections=efficiency_section,
    )
    return FitOutcome(policy_path, policy, evaluation, rows)


def _baseline_samples(spec: SweepSpec) -> int:
    """Best-of-N's samples in the comparison: as many as the dev sweep drew (enough for its budgets)."""
    drawn = [config.params.get("n", 0) for config in spec.strategies if config.strategy == "best_of_n"]
    return max(drawn, default=0) or max(8, max(spec.budgets) // 64)


def _write_checked_policy(policy: Policy, path: Path) -> None:
    """Write the policy where ``auto`` will read it, only once ``auto`` accepts it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path.with_name(path.name + ".new")
    candidate.write_text(policy.model_dump_json(indent=2, exclude_none=True) + "\n")
    try:
        load_policy(str(candidate))  # checked now, not at the first request
    except Exception:
        candidate.unlink()
        raise
    candidate.replace(path)


def _compare(results: list[SweepResult]) -> list[Efficiency]:
    def points(name: str) -> dict[int, tuple[float, float]]:
        cells: dict[int, list[SweepResult]] = {}
        for result in results:
            if result.strategy_name == name:
                cells.setdefault(result.budget, []).append(result)
        return {
            budget: (sum(r.correct for r in cell) / len(cell), sum(r.compute_tokens for r in cell) / len(cell))
            for budget, cell in cells.items()
        }

    return efficiency(points("auto"), points("best_of_n"))


def efficiency_markdown(rows: list[Efficiency], policy: Policy) -> str:
    """The report section: auto vs best-of-N majority, per budget."""
    lines = [
        "## `auto` vs best-of-N majority",
        f"Policy `{policy.version}`, difficulty bin edges {policy.difficulty_bins}. Efficiency ratio = "
        "compute tokens best-of-N majority needs to reach `auto`'s accuracy (its frontier, linearly "
        "interpolated) ÷ compute tokens `auto` used.",
        "",
        "| budget | auto acc | auto tokens | best-of-N acc | best-of-N tokens | best-of-N tokens to match "
        "| ratio | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        needed = f"{row.baseline_tokens_to_match:.0f}" if row.baseline_tokens_to_match is not None else "—"
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "—"
        lines.append(
            f"| {row.budget} | {row.auto_accuracy:.2f} | {row.auto_tokens:.0f} | {row.baseline_accuracy:.2f} | "
            f"{row.baseline_tokens:.0f} | {needed} | {ratio} | {row.note} |"
        )
    return "\n".join(lines)

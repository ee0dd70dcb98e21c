"""Running a sweep end to end (engine or service, Redis, files) and fitting the router from one.

``ttc sweep`` and ``ttc fit-router`` are thin wrappers over ``run_sweep`` and ``fit_router``;
tests call these directly.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from harness.catalog import load_dataset
from harness.datasets import Problem
from harness.evaluation import evaluate_policy, markdown, plot
from harness.fit import Cost, fit_policy
from harness.learned import refuse_trained_items
from harness.replay import (
    NOT_SEARCHES,
    Rescore,
    StoredItem,
    attach_searches,
    rescorer,
    stored_items,
    switch_label,
)
from harness.report import write_report
from harness.results import ProbeFeatures, SweepResult, SweepStore, export_jsonl
from harness.solvers import InProcessSolver, ServiceSolver, Solver
from harness.sweep import StrategySpec, Sweep, SweepSpec
from orchestrator.core.costmodel import ModelShape, load_model_shape
from orchestrator.core.errors import InvalidRequestError
from orchestrator.core.model_catalog import local_reference, model_identity
from orchestrator.core.settings import Settings
from orchestrator.core.store import Store, open_redis
from service.runtime import Runtime
from strategies import REGISTRY
from strategies.allocation import Switch
from strategies.policy import Policy, Sampling, load_policy
from verifiers.learned import load_artifact

Progress = Callable[[int, int], None]
REPORT_EDGES = [0.34, 0.67]  # the report's probe-difficulty bins: thirds


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
    settings: Settings, server: str | None, api_key: str | None, runtime: Runtime | None, complete: bool = False
) -> AsyncIterator[tuple[Solver, Store]]:
    """In process: ``runtime``, else the engine and Redis of ``settings`` (only Redis for a sweep
    already ``complete``: nothing to decode). With ``server``: the SDK, plus local Redis for the results."""
    if runtime is not None:
        yield InProcessSolver(runtime), runtime.store
        return
    if server is None and complete:
        connection = await open_redis(settings.redis_url, settings.data_dir)
        try:
            yield NoSolver(), Store(connection, settings.redis_namespace)
        finally:
            await connection.aclose()
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
) -> SweepOutcome:
    """Run (or resume) ``spec``, then export ``results.jsonl`` and write the report into ``out_dir``.

    Attempts run on ``runtime`` if given, else through the SDK against ``server`` if given,
    else on an engine started from ``settings``.
    """
    started = time.monotonic()
    problems = load_dataset(spec.dataset, spec.split, spec.limit, spec.data_seed)  # bad data fails before the engine
    spec = spec.model_copy(update={"model": spec.model or (runtime.model_name if runtime else served_name(settings))})
    if any(config.params.get("verifier") == "learned" for config in spec.strategies):
        if settings.learned_verifier is None:
            raise InvalidRequestError("the sweep uses the learned verifier: set TTC_LEARNED_VERIFIER")
        trained = frozenset(load_artifact(settings.learned_verifier)["meta"]["item_hashes"])
        refuse_trained_items(problems, trained, f"sweep {spec.name}")
    complete = runtime is None and server is None and await _is_complete(spec, problems, settings)
    async with _solver_and_store(settings, server, api_key, runtime, complete) as (solver, store):
        results_store = SweepStore(store, spec.name)
        stored = await results_store.spec()
        if stored and stored.get("model") and stored["model"] != spec.model:
            raise InvalidRequestError(
                f"sweep {spec.name!r} was run on {stored['model']!r}, not {spec.model!r}: give this one another name"
            )
        sweep = Sweep(spec, solver, results_store)
        results = await sweep.run(problems, on_progress)
        probes = await results_store.probes()
    jsonl = export_jsonl(results, probes, out_dir / "results.jsonl")
    title = title or f"Sweep {spec.name}"
    report = write_report(out_dir, title, spec.model_dump(), results, probes, REPORT_EDGES)
    return SweepOutcome(results, probes, jsonl, report, time.monotonic() - started, sweep.failures)


class NoSolver:
    """The solver of a sweep with every point stored: asked to decode, it says so."""

    async def solve(self, question: str, strategy: str, params: dict[str, Any], budget: Any) -> Any:
        raise RuntimeError("the sweep was complete: nothing should have been decoded")


async def _is_complete(spec: SweepSpec, problems: list[Problem], settings: Settings) -> bool:
    """Whether every point of ``spec`` is stored already (then no engine is started)."""
    connection = await open_redis(settings.redis_url, settings.data_dir)
    try:
        stored = SweepStore(Store(connection, settings.redis_namespace), spec.name)
        return await stored.spec() is not None and not await Sweep(spec, NoSolver(), stored).pending(problems)
    finally:
        await connection.aclose()


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
    evaluation: dict[str, Any] | None
    report: Path | None


async def fit_router(
    sweep_name: str,
    policy_path: Path,
    settings: Settings,
    *,
    evaluate: bool = True,
    eval_limit: int | None = None,
    out_dir: Path | None = None,
    server: str | None = None,
    api_key: str | None = None,
    runtime: Runtime | None = None,
    on_progress: Progress | None = None,
    cost: Cost = "tokens",
    pooled_with: Sequence[str] = (),
    classes: bool = False,
    verifier: str | None = None,
    scores: Mapping[str, float] | None = None,
) -> FitOutcome:
    """Fit ``auto``'s policy by replaying the dev sweep ``sweep_name``'s best-of-N samples, counting
    what a rule saves in ``cost`` (tokens or eFLOPs); then (``evaluate``) draw the same kind of
    samples on the test split (a resumable sweep named ``<sweep>-test``) and replay the policy and
    the baselines on them.

    ``pooled_with`` names more dev sweeps (other datasets, the same budgets) whose items join the
    fit and whose test sweeps join the evaluation: a mixed stream of questions, as a router sees
    them. The policy samples as the sweep with the longest samples did. ``classes`` lets short and
    long questions get rules of their own (``harness.classes``). ``verifier`` scores the
    stored samples again offline (a free, text-only one, or a served one whose earlier scores
    ``scores`` holds: ``harness.replay.rescorer``), and ``auto`` scores its samples with it online.
    """
    store = runtime.store if runtime else None
    rescore = rescorer(verifier, scores)
    sources = [await _stored_items(name, settings, store, rescore) for name in (sweep_name, *pooled_with)]
    specs = [spec for spec, _ in sources]
    for spec in specs:
        if spec.split != "dev":
            raise InvalidRequestError(f"sweep {spec.name!r} is on the {spec.split} split: fit on a dev sweep")
        if spec.budgets != specs[0].budgets:
            raise InvalidRequestError(f"sweep {spec.name!r} has other budgets than {specs[0].name!r}: pool like sweeps")
    spec = specs[0]
    dev = [item for _, items in sources for item in items]
    pass_config = max((_pass_config(s) for s in specs), key=lambda c: _sampling_of(c).max_tokens)
    searches = [config for config in spec.strategies if config.strategy not in NOT_SEARCHES]
    switches = [Switch(strategy=c.strategy, params=c.params, min_tokens=min(spec.budgets)) for c in searches]
    if searches:
        dev = attach_searches(dev, (await load_sweep(sweep_name, settings, store))[1])
    shape = _model_shape(settings) if cost == "eflops" else None
    model = spec.model or (runtime.model_name if runtime else served_name(settings))
    source = "+".join(s.name for s in specs)
    sampling = _sampling_of(pass_config)
    if verifier is not None:
        sampling = sampling.model_copy(update={"verifier": verifier})
    policy = fit_policy(
        dev, spec.budgets, sampling, model, source, switches=switches, cost=cost, shape=shape,
        classes=classes,
    )  # fmt: skip
    policy_path = policy_path.resolve()  # noqa: ASYNC240 (a local file, before any engine work)
    _write_checked_policy(policy, policy_path)
    if not evaluate:
        return FitOutcome(policy_path, policy, None, None)
    out_dir = out_dir or Path("runs") / f"{source}-test"
    test: list[StoredItem] = []
    for index, dev_spec in enumerate(specs):
        test += await _test_items(
            dev_spec,
            policy,
            searches if index == 0 else [],
            _pass_config(dev_spec),
            eval_limit,
            out_dir if len(specs) == 1 else out_dir / f"{dev_spec.name}-test",
            settings,
            rescore,
            server=server,
            api_key=api_key,
            runtime=runtime,
            on_progress=on_progress,
        )
    dataset = "+".join(s.dataset for s in specs)
    found = evaluate_policy(policy, dev, test, spec.budgets, shape)
    evaluation = {"dataset": dataset, "model": model, "policy": policy.version, **found}
    (out_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    plot(policy, test, spec.budgets, out_dir / "auto-vs-majority.png", f"{dataset}: auto vs best-of-N (test)")
    report = out_dir / "evaluation.md"
    report.write_text(markdown(evaluation, dataset) + "\n![auto vs majority](auto-vs-majority.png)\n")
    return FitOutcome(policy_path, policy, evaluation, report)


async def _test_items(
    dev_spec: SweepSpec,
    policy: Policy,
    searches: list[StrategySpec],
    pass_config: StrategySpec,
    eval_limit: int | None,
    out_dir: Path,
    settings: Settings,
    rescore: Rescore | None,
    **how: Any,
) -> list[StoredItem]:
    """The test-split twin of a dev sweep (``<name>-test``, resumable), drawn and read back."""
    test_spec = dev_spec.model_copy(
        update={
            "name": f"{dev_spec.name}-test",
            "split": "test",
            "limit": eval_limit or dev_spec.limit,
            "strategies": [pass_config, *_switched_to(policy, searches)],
        }
    )
    await run_sweep(test_spec, out_dir, settings, title=f"Test samples for {dev_spec.name}", **how)
    store = how["runtime"].store if how.get("runtime") else None
    _, test = await _stored_items(test_spec.name, settings, store, rescore)
    if len(test_spec.strategies) > 1:  # the searches the policy switches to ran on the test items too
        test = attach_searches(test, (await load_sweep(test_spec.name, settings, store))[1])
    return test


async def dump_sweep(name: str, path: Path, settings: Settings) -> int:
    """Write everything stored under sweep ``name`` to ``path`` (gzipped JSON); the points written.

    Long sweeps outlive a machine this way: commit the file, ``load_sweep_dump`` it elsewhere, and
    the same ``ttc sweep`` command resumes where this one stopped.
    """
    connection = await open_redis(settings.redis_url, settings.data_dir)
    try:
        dumped = await SweepStore(Store(connection, settings.redis_namespace), name).dump()
    finally:
        await connection.aclose()
    if dumped["spec"] is None:
        raise InvalidRequestError(f"no sweep named {name!r} in this Redis")
    await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
    await anyio.Path(path).write_bytes(gzip.compress(json.dumps(dumped).encode(), mtime=0))
    return sum(len(dumped[part]) for part in ("results", "probes", "passes"))


def read_sweep_dump(path: Path) -> dict[str, Any]:
    """A ``dump_sweep`` file's contents (spec, results, probes and passes, each as stored), or an
    ``InvalidRequestError`` saying the file is not one. Example: ``read_sweep_dump(p)["spec"]["dataset"]``."""
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError) as error:
        raise InvalidRequestError(f"{path} is not a sweep dump ({error})") from None


async def load_sweep_dump(path: Path, settings: Settings) -> tuple[str, int]:
    """Store a ``dump_sweep`` file under its sweep's name; (the name, the points added)."""
    dumped = await anyio.to_thread.run_sync(read_sweep_dump, path)
    connection = await open_redis(settings.redis_url, settings.data_dir)
    try:
        added = await SweepStore(Store(connection, settings.redis_namespace), str(dumped.get("sweep"))).restore(dumped)
    finally:
        await connection.aclose()
    return str(dumped["sweep"]), added


def served_name(settings: Settings) -> str:
    """The catalogue name of the model the settings serve (a sweep and its policy record it)."""
    return model_identity(settings.model)


def _model_shape(settings: Settings) -> ModelShape:
    """The served model's shape, for pricing replays in eFLOPs (the engine is not started)."""
    from orchestrator.core.backends.inprocess import resolve_model

    if settings.backend == "remote":
        reference = settings.tokenizer or local_reference(settings.model, settings.model_cache_dir)
        return load_model_shape(reference, setting="TTC_TOKENIZER")
    return load_model_shape(resolve_model(settings))


async def _stored_items(
    name: str, settings: Settings, store: Store | None, rescore: Rescore | None = None
) -> tuple[SweepSpec, list[StoredItem]]:
    """A stored sweep's spec and its items' best-of-N samples, graded (and scored again offline
    by ``rescore``, when given)."""
    if store is None:
        raw_spec, passes = await load_sweep_passes(name, settings)
    else:
        stored = SweepStore(store, name)
        raw_spec, passes = await stored.spec(), await stored.passes()
        if raw_spec is None:
            raise InvalidRequestError(f"no sweep named {name!r} in this Redis: run `ttc sweep --name` first")
    spec = SweepSpec.model_validate(raw_spec)
    problems = load_dataset(spec.dataset, spec.split, spec.limit, spec.data_seed)
    items = stored_items(problems, passes, rescore)
    if not items:
        raise InvalidRequestError(
            f"sweep {name!r} has no stored best-of-N samples: sweep best_of_n first, e.g. "
            """--strategy 'best_of_n:{"n":16,"adaptive":false}'"""
        )
    return spec, items


def _switched_to(policy: Policy, searches: list[StrategySpec]) -> list[StrategySpec]:
    """The dev sweep's search configurations that some rule of the policy switches to."""
    used = {switch_label(r.allocation.switch) for r in policy.every_rule() if r.allocation.switch is not None}
    return [config for config in searches if config.label in used]


def _pass_config(spec: SweepSpec) -> StrategySpec:
    """The sweep's best-of-N configuration with the most samples: the pass the policy is fitted on."""
    configs = [config for config in spec.strategies if config.uses_one_pass]
    if not configs:
        raise InvalidRequestError(f"sweep {spec.name!r} has no best_of_n configuration to fit on")
    return max(configs, key=lambda config: REGISTRY["best_of_n"].parse_params(config.params).n)


def _sampling_of(config: StrategySpec) -> Sampling:
    """How the pass drew its samples, as the policy's sampling (``auto`` draws the same way)."""
    params = REGISTRY["best_of_n"].parse_params(config.params)
    return Sampling(
        temperature=params.temperature,
        max_tokens=params.max_tokens,
        logprobs=params.logprobs,
        system_prompt=params.system_prompt,
        verifier=params.verifier,
    )


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

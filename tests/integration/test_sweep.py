"""The budget-sweep harness end to end: a tiny sweep on the engine (files, plots, a policy
auto loads, the test-split comparison), and resuming an interrupted sweep."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import anyio
import pytest
from PIL import Image

from harness.catalog import load_dataset
from harness.learned import from_sweep_passes
from harness.results import SweepStore, unit_key
from harness.run import fit_router, run_sweep
from harness.solvers import InProcessSolver
from harness.sweep import Sweep, SweepSpec
from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.budget import Budget
from orchestrator.core.errors import InvalidRequestError
from orchestrator.core.settings import Settings
from orchestrator.core.store import Store
from service.runtime import Runtime
from strategies.policy import load_policy
from tests.sessions import VERIFIERS


def assert_png_has_a_picture(path: Path) -> None:
    with Image.open(path) as image:
        image.load()
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert image.size[0] > 300 and (colours is None or len(colours) > 20), path  # not blank


@pytest.mark.engine
async def test_a_tiny_sweep_produces_results_table_plots_and_a_policy_auto_loads(
    inprocess_backend, store, tmp_path: Path
) -> None:
    settings = Settings()
    runtime = Runtime(settings, inprocess_backend, store, VERIFIERS)
    spec = SweepSpec(
        name=f"tiny-{uuid.uuid4().hex[:6]}",
        dataset="arithmetic",
        limit=4,
        strategies=[{"strategy": "direct"}, {"strategy": "best_of_n", "params": {"n": 4, "max_tokens": 96}}],
        budgets=[256, 512],
        concurrency=4,
        probe={"probe_samples": 2, "probe_max_tokens": 64},
    )
    seen: list[tuple[int, int]] = []
    outcome = await run_sweep(spec, tmp_path / "dev", settings, runtime=runtime, on_progress=lambda *p: seen.append(p))

    rows = [json.loads(line) for line in outcome.jsonl.read_text().splitlines()]
    assert len(rows) == 2 * 2 * 4 == len(outcome.results)
    assert {(r["strategy"], r["budget"]) for r in rows} == {
        (s, b) for s in ("direct", "best_of_n{max_tokens=96,n=4}") for b in (256, 512)
    }
    assert all(r["difficulty"] is not None and r["compute_tokens"] > 0 for r in rows)
    assert all(r["compute_tokens"] <= r["budget"] for r in rows if r["derived"])
    assert seen[-1][0] == seen[-1][1] == 4 + 4 * 2 + 4  # probes, direct points, best-of-N passes
    report = outcome.report.read_text()
    assert "| `direct` | 256 | all | 4 |" in report and "accuracy_vs_flops.png" in report
    for name in ("accuracy_vs_tokens.png", "accuracy_vs_flops.png"):
        assert_png_has_a_picture(tmp_path / "dev" / name)

    # the learned verifier's training rows: every stored sample, labelled, with its signals
    passes = await SweepStore(store, spec.name).passes()
    labelled = from_sweep_passes(spec.model_dump(), passes)
    assert len(labelled) == 4 * 4 and {row.item_id for row in labelled} == {p.split("|")[0] for p in passes}
    assert all(row.facts.confidence and row.facts.calculator is not None for row in labelled)

    fitted = await fit_router(
        spec.name, tmp_path / "policy.json", settings, eval_limit=2, runtime=runtime, out_dir=tmp_path / "test"
    )
    policy = load_policy(str(fitted.policy_path))
    assert policy.version == fitted.policy.version and [r.budget for r in policy.rules] == [256, 512]
    assert policy.sampling.max_tokens == 96 and policy.fitted["items"] == 4
    evaluation = json.loads((tmp_path / "test" / "evaluation.json").read_text())
    assert evaluation == fitted.evaluation and evaluation["items"] == 2
    for row in evaluation["budgets"].values():
        low, high = row["efficiency_ci"]
        assert low <= row["efficiency_ratio"] <= high and row["auto"]["tokens"] > 0
    assert "| 512 |" in fitted.report.read_text()
    assert_png_has_a_picture(tmp_path / "test" / "auto-vs-majority.png")
    # the policy it wrote runs online
    attempt = await InProcessSolver(runtime).solve(
        "What is 2 + 3?", "auto", {"policy": policy.model_dump(mode="json")}, Budget(max_tokens=512)
    )
    assert attempt.status == "succeeded" and attempt.trace["route"]["policy"] == policy.version
    # fitted on eFLOPs instead: the sweep kept every point's eFLOPs, so its searches can be priced too
    on_eflops = await fit_router(
        spec.name, tmp_path / "policy-eflops.json", settings, evaluate=False, runtime=runtime, cost="eflops"
    )
    fitted_on = on_eflops.policy.fitted
    assert fitted_on["cost"] == "eflops" and fitted_on["switches_tried"] == ["direct"]
    assert all(row["dev_auto"]["eflops"] > 0 for row in fitted_on["budgets"].values())


class CountingSolver:
    """Records every attempt by (question, strategy, budget) before running it."""

    def __init__(self, inner: InProcessSolver) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str, int | None]] = []

    async def solve(self, question, strategy, params, budget):
        self.calls.append((question, strategy, budget.max_tokens))
        return await self.inner.solve(question, strategy, params, budget)


async def test_an_interrupted_sweep_resumes_without_redoing_finished_points(store) -> None:
    backend = ScriptedBackend(lambda prompt, sampling: ["3 + 4 = 7. The answer is 7."] * sampling.n, delay_s=0.05)
    solver = InProcessSolver(Runtime(Settings(), backend, store, VERIFIERS))
    spec = SweepSpec(
        name=f"resume-{uuid.uuid4().hex[:6]}",
        limit=6,
        strategies=[{"strategy": "direct"}, {"strategy": "best_of_n", "params": {"n": 4}}],
        budgets=[256, 512],
        concurrency=2,
    )
    problems = load_dataset(spec.dataset, spec.split, spec.limit)
    ids = {p.question: p.id for p in problems}
    results = SweepStore(store, spec.name)

    first = CountingSolver(solver)
    with anyio.CancelScope() as interrupted:  # stop after 9 units, mid-sweep, like ^C
        await Sweep(spec, first, results).run(problems, lambda done, total: done >= 9 and interrupted.cancel())
    finished = await results.done_keys()
    probed = set(await results.probes())
    assert 0 < len(finished) < 6 * 2 * 2

    second = CountingSolver(solver)
    done = await Sweep(spec, second, results).run(problems)
    assert len(done) == 6 * 2 * 2 and {r.key for r in done} >= finished
    for question, strategy, budget in second.calls:
        if strategy == "probe":
            assert ids[question] not in probed
        elif strategy == "direct":
            assert unit_key(ids[question], "direct", budget, 0) not in finished
    redone_passes = {ids[q] for q, s, _ in second.calls if s == "best_of_n"}
    finished_passes = {k.split("|")[0] for k in finished if "best_of_n" in k}
    assert not redone_passes & finished_passes

    third = CountingSolver(solver)
    await Sweep(spec, third, results).run(problems)
    assert third.calls == []  # everything was stored


async def test_a_dumped_sweep_resumes_on_another_store_without_redoing_anything(store, redis_connection) -> None:
    backend = ScriptedBackend(lambda prompt, sampling: ["3 + 4 = 7. The answer is 7."] * sampling.n)
    spec = SweepSpec(
        name=f"moved-{uuid.uuid4().hex[:6]}",
        limit=3,
        strategies=[{"strategy": "direct"}, {"strategy": "best_of_n", "params": {"n": 4, "adaptive": False}}],
        budgets=[256],
    )
    problems = load_dataset(spec.dataset, spec.split, spec.limit)
    await Sweep(
        spec, InProcessSolver(Runtime(Settings(), backend, store, VERIFIERS)), SweepStore(store, spec.name)
    ).run(problems)
    dumped = json.loads(json.dumps(await SweepStore(store, spec.name).dump()))  # through a file, as JSON
    elsewhere = Store(redis_connection, f"elsewhere{uuid.uuid4().hex[:6]}")
    moved = SweepStore(elsewhere, spec.name)
    assert await moved.restore(dumped) == 3 * 2 + 3 + 3  # results, probes, passes
    assert await moved.restore(dumped) == 0  # what is stored stays as it is
    counting = CountingSolver(InProcessSolver(Runtime(Settings(), backend, elsewhere, VERIFIERS)))
    assert len(await Sweep(spec, counting, moved).run(problems)) == 3 * 2 and counting.calls == []
    with pytest.raises(InvalidRequestError, match="not a sweep dump"):
        await moved.restore({"format": "other"})


async def test_a_failing_run_is_not_stored_and_the_rest_go_on(store) -> None:
    backend = ScriptedBackend(lambda prompt, sampling: ["The answer is 7."] * sampling.n)
    solver = CountingSolver(InProcessSolver(Runtime(Settings(), backend, store, VERIFIERS)))
    problems = load_dataset("arithmetic", "dev", 3)

    async def flaky(question, strategy, params, budget):
        if question == problems[1].question and strategy == "direct":
            raise RuntimeError("engine fell over")
        return await solver.solve(question, strategy, params, budget)

    spec = SweepSpec(name=f"flaky-{uuid.uuid4().hex[:6]}", limit=3, strategies=[{"strategy": "direct"}], budgets=[256])
    sweep = Sweep(spec, type("Flaky", (), {"solve": staticmethod(flaky)})(), SweepStore(store, spec.name))
    done = await sweep.run(problems)
    assert {r.item_id for r in done} == {problems[0].id, problems[2].id}
    assert sweep.failures == ["RuntimeError: engine fell over"]


async def test_a_sweep_runs_through_the_sdk_against_a_service(store, tmp_path: Path) -> None:
    """Same sweep, attempts sent over HTTP to a real app (scripted engine, real Redis, real worker)."""
    import asyncio

    import uvicorn

    from api.app import create_app
    from harness.solvers import ServiceSolver
    from tests.conftest import free_port
    from ttc import AsyncClient

    settings = Settings(redis_namespace=store.keys.namespace)

    problems = load_dataset("arithmetic", "dev", 3)
    first = problems[0]

    def script(prompt: str, sampling) -> list[str]:  # right about the first item only
        return [f"The answer is {first.answer}." if first.question in prompt else "The answer is -1."] * sampling.n

    backend = ScriptedBackend(script)
    port = free_port()
    app = create_app(settings, Runtime(settings, backend, store, VERIFIERS))
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    serving = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn has no start-up event)
            await anyio.sleep(0.05)
        spec = SweepSpec(
            name=f"sdk-{uuid.uuid4().hex[:6]}",
            limit=3,
            strategies=[{"strategy": "direct"}, {"strategy": "best_of_n", "params": {"n": 4}}],
            budgets=[512, 1024],
        )
        async with AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            done = await Sweep(spec, ServiceSolver(client), SweepStore(store, spec.name)).run(problems)
    finally:
        server.should_exit = True
        await serving
    assert len(done) == 3 * 2 * 2 and all(r.status == "succeeded" for r in done)
    derived = [r for r in done if r.derived]
    assert derived and all(0 < r.params["n"] <= 4 and r.compute_tokens <= r.budget for r in derived)
    assert {r.item_id for r in done if r.correct} == {first.id}

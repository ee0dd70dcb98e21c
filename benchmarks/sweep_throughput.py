"""Engine throughput during a sweep against raw vLLM on the same requests, as a ratio in one run.

One engine serves both. *Raw*: every item's requests — the probe (4 samples, 160 tokens) and
the best-of-16 pass (256 tokens), temperature 0.7, top-5 logprobs, prompts rendered as ttc
renders them — are sent to ``AsyncLLM.generate`` at once, which is as full as the batch
can be. *Sweep*: ``ttc sweep``'s in-process path (``Sweep`` on a ``Runtime``, units admitted
by sequences in flight) over the same items, storing everything in a scratch Redis.
*Service* (``--service``): the same sweep sent as ``ttc sweep --server`` sends it — through
the SDK to the REST API, the Redis job queue and the worker, all with default settings —
to an app serving this engine. Every round counts completion tokens per second of wall
time. Order raw, sweep, [service,] raw: each is compared with the mean of the two raw
rounds, so a drift in machine load shows as a gap between them. Sampling is random, so the
rounds decode different (similar) amounts.

    .venv/bin/python benchmarks/sweep_throughput.py [--items 32] [--dataset arithmetic] [--service]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio

RESULTS = Path(__file__).parent / "results" / "sweep_throughput.json"
PASS = {"n": 16, "max_tokens": 256}
PROBE = {"n": 4, "max_tokens": 160}


async def raw_round(engine, prompts: list[list[int]]) -> tuple[int, float]:
    """(completion tokens, seconds) of every probe and pass request sent at once."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    shapes = [
        SamplingParams(temperature=0.7, logprobs=5, output_kind=RequestOutputKind.FINAL_ONLY, **s)
        for s in (PROBE, PASS)
    ]
    tokens = 0

    async def one(token_ids: list[int], params) -> None:
        nonlocal tokens
        async for output in engine.generate({"prompt_token_ids": token_ids}, params, request_id=uuid.uuid4().hex):
            if output.finished:
                tokens += sum(len(c.token_ids) for c in output.outputs)

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        for token_ids in prompts:
            for params in shapes:
                group.start_soon(one, token_ids, params)
    return tokens, time.monotonic() - started


async def sweep_round(runtime, problems, streams: int, solver=None) -> tuple[int, float]:
    """(completion tokens, seconds) of a fresh one-pass sweep over the items (in process, or
    through ``solver``)."""
    from harness.results import SweepStore
    from harness.solvers import InProcessSolver
    from harness.sweep import Sweep, SweepSpec

    spec = SweepSpec(
        name=f"throughput-{uuid.uuid4().hex[:6]}",
        limit=len(problems),
        strategies=[{"strategy": "best_of_n", "params": {**PASS, "adaptive": False}}],
        budgets=[2048],
        streams=streams,
    )
    stored = SweepStore(runtime.store, spec.name)
    started = time.monotonic()
    await Sweep(spec, solver or InProcessSolver(runtime), stored).run(problems)
    seconds = time.monotonic() - started
    passes = [json.loads(raw) for raw in (await stored.passes()).values()]
    tokens = sum(p["usage"]["completion_tokens"] for p in passes)
    tokens += sum(p.compute_tokens - p.prompt_tokens for p in (await stored.probes()).values())
    return tokens, seconds


async def service_round(runtime, settings, problems, streams: int) -> tuple[int, float]:
    """The sweep through the SDK, REST API, Redis queue and worker of an app on this engine."""
    import asyncio

    import uvicorn

    from api.app import create_app
    from harness.solvers import ServiceSolver
    from ttc import AsyncClient

    server = uvicorn.Server(uvicorn.Config(create_app(settings, runtime), port=8766, log_level="warning"))
    serving = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:  # noqa: ASYNC110
        await anyio.sleep(0.05)
    try:
        async with AsyncClient(base_url="http://127.0.0.1:8766", timeout=3600) as client:
            return await sweep_round(runtime, problems, streams, ServiceSolver(client))
    finally:
        server.should_exit = True
        await serving


async def main(args: argparse.Namespace) -> dict:
    from harness.catalog import load_dataset
    from orchestrator.core.backends.inprocess import InProcessBackend
    from orchestrator.core.model_catalog import ensure_model
    from orchestrator.core.settings import EngineOptions, Settings
    from orchestrator.core.store import Store, open_redis
    from service.runtime import Runtime
    from strategies.direct import DEFAULT_SYSTEM_PROMPT
    from verifiers.registry import VerifierSet

    settings = Settings()
    problems = load_dataset(args.dataset, "dev", args.items, 0)
    backend = await InProcessBackend.start(
        str(ensure_model(settings.model_cache_dir, settings.model)), EngineOptions(cpu_kv_cache_space_gib=4)
    )
    verifiers = VerifierSet.build(settings)
    connection = await open_redis(None, Path(tempfile.mkdtemp(prefix="ttc-throughput-")))
    try:
        runtime = Runtime(settings, backend, Store(connection, "throughput"), verifiers)
        renderer = backend.renderer
        prompts = [
            renderer.encode(renderer.render_question(p.question, system=DEFAULT_SYSTEM_PROMPT)) for p in problems
        ]
        engine = await backend._live_engine()
        rounds = {"raw_1": await raw_round(engine, prompts)}
        rounds["sweep"] = await sweep_round(runtime, problems, args.streams)
        if args.service:
            rounds["service"] = await service_round(runtime, settings, problems, args.streams)
        rounds["raw_2"] = await raw_round(engine, prompts)
    finally:
        await connection.aclose()
        await verifiers.aclose()
        await backend.aclose()
    rates = {name: tokens / seconds for name, (tokens, seconds) in rounds.items()}
    raw = (rates["raw_1"] + rates["raw_2"]) / 2
    report = {
        "command": "python benchmarks/sweep_throughput.py " + " ".join(sys.argv[1:]),
        "items": len(problems),
        "rounds": {
            name: {"completion_tokens": t, "seconds": round(s, 1), "tokens_per_s": round(rates[name], 1)}
            for name, (t, s) in rounds.items()
        },
        "raw_over_sweep": round(raw / rates["sweep"], 3),
        **({"raw_over_service": round(raw / rates["service"], 3)} if "service" in rates else {}),
        "raw_rounds_spread": round(abs(rates["raw_1"] - rates["raw_2"]) / raw, 3),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--dataset", default="arithmetic")
    parser.add_argument("--streams", type=int, default=128, help="the sweep's sequences in flight")
    parser.add_argument("--service", action="store_true", help="also sweep through the REST API and worker")
    anyio.run(main, parser.parse_args())

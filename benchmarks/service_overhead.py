"""The service's own cost: in-process strategy calls vs HTTP + Redis queue + worker, in one run,
on one engine; then requests per second and p50/p95 latency at concurrency 1, 8 and 32.

Both paths run the same greedy ``direct`` requests (identical work), alternating rounds.

    .venv/bin/python benchmarks/service_overhead.py [--requests 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path

import anyio
import httpx

RESULTS_DIR = Path(__file__).parent / "results"
PARAMS = {"max_tokens": 48, "temperature": 0.0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> dict:
    import uvicorn

    from api.app import create_app
    from orchestrator.core.settings import Settings
    from service.runtime import Runtime

    settings = Settings(redis_namespace=f"bench-{uuid.uuid4().hex[:6]}", worker_concurrency=64)
    questions = [f"What is {3 * i + 2} + {5 * i + 7}?" for i in range(args.requests)]
    async with Runtime.open(settings) as runtime:
        port = 8765
        server = uvicorn.Server(uvicorn.Config(create_app(settings, runtime), port=port, log_level="warning"))
        serving = asyncio.get_running_loop().create_task(server.serve())
        while not server.started:  # noqa: ASYNC110
            await anyio.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

            async def in_process(question: str) -> None:
                await runtime.reason(question, params=PARAMS)

            async def over_http(question: str) -> None:
                response = await client.post("/v1/reason", json={"question": question, "params": PARAMS})
                response.raise_for_status()

            async def batch(call, concurrency: int) -> tuple[float, list[float]]:
                latencies: list[float] = []
                limiter = anyio.Semaphore(concurrency)

                async def one(question: str) -> None:
                    async with limiter:
                        started = time.perf_counter()
                        await call(question)
                        latencies.append(time.perf_counter() - started)

                started = time.perf_counter()
                async with anyio.create_task_group() as group:
                    for question in questions:
                        group.start_soon(one, question)
                return time.perf_counter() - started, latencies

            await batch(over_http, 8)  # warm-up: prefix cache and connections for both paths
            overhead: dict[str, list[float]] = {"in_process": [], "http_redis_worker": []}
            for round_index in range(args.rounds):
                order = [("in_process", in_process), ("http_redis_worker", over_http)]
                for name, call in order if round_index % 2 == 0 else reversed(order):
                    seconds, _ = await batch(call, 8)
                    overhead[name].append(seconds)
                    print(f"round {round_index + 1}: {name:>17} {seconds:.2f} s for {len(questions)} requests")
            load = {}
            for concurrency in (1, 8, 32):
                seconds, latencies = await batch(over_http, concurrency)
                load[str(concurrency)] = {
                    "requests_per_s": len(questions) / seconds,
                    "p50_s": percentile(latencies, 0.5),
                    "p95_s": percentile(latencies, 0.95),
                }
                print(f"concurrency {concurrency:>2}: {load[str(concurrency)]}")
        server.should_exit = True
        await serving
    medians = {name: statistics.median(times) for name, times in overhead.items()}
    return {
        "benchmark": "service_overhead",
        "requests_per_round": len(questions),
        "params": PARAMS,
        "seconds": overhead,
        "median_s": medians,
        "overhead_ratio": medians["http_redis_worker"] / medians["in_process"],
        "load": load,
    }


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TTC_DATA_DIR", str(Path("/tmp") / f"ttc-bench-{os.getpid()}"))
    report = anyio.run(main, parser.parse_args())
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "service_overhead.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("median_s", "overhead_ratio", "load")}, indent=2))
    print(f"saved {out}")

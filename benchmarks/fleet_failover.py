"""A vLLM server SIGKILLed under a fleet's tree searches, then started again.

A fleet on this machine (``ttc fleet``: two CPU vLLM servers, Redis, ``ttc serve``, two workers)
runs a wave of beam searches; while both servers are busy, ``vllm-0`` is SIGKILLed. What is
recorded: every job's outcome and usage (its ``replica_resends``, and the compute tokens of jobs
that were resent against those that were not), what ``/readyz`` and ``/metrics`` answered
during the outage, how long the server took to come back, and — in a second wave after it is
back — the share of requests it takes again (the trees whose rendezvous order puts it first).

    .venv/bin/python benchmarks/fleet_failover.py --model smollm2-135m --questions 16

Prints and saves ``benchmarks/results/fleet_failover-<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fleet_affinity import run_job, server_counters

from cli.fleet import Fleet, cpu_seconds, free_port

RESULTS = Path(__file__).parent / "results"
SEARCH = "beam_search"


async def wave(fleet: Fleet, problems: list, jobs: list[dict]) -> None:
    async with httpx.AsyncClient() as client:

        async def one(problem) -> None:
            jobs.append(await run_job(client, fleet.api_url, SEARCH, problem))

        async with anyio.create_task_group() as group:
            for problem in problems:
                group.start_soon(one, problem)


async def busy(url: str) -> bool:
    from orchestrator.core.backends.remote import parse_prometheus_counters

    async with httpx.AsyncClient() as client:
        page = (await client.get(f"{url}/metrics", timeout=5)).text
    return parse_prometheus_counters(page).requests_running > 0


async def watch_outage(fleet: Fleet, seen: list[dict]) -> None:
    """What the API says while a replica is down: /readyz and the replica gauge of /metrics."""
    async with httpx.AsyncClient() as client:
        ready = await client.get(f"{fleet.api_url}/readyz", timeout=30)
        metrics = await client.get(f"{fleet.api_url}/metrics", timeout=30)
    gauges = [line for line in metrics.text.splitlines() if line.startswith("ttc_engine_replica_up{")]
    seen.append(
        {
            "readyz_status": ready.status_code,
            "replicas": ready.json().get("detail", {}).get("replicas"),
            "metrics_status": metrics.status_code,
            "replica_up": gauges,
        }
    )


def summarise(jobs: list[dict]) -> dict:
    resent = [job for job in jobs if job["replica_resends"]]
    clean = [job for job in jobs if not job["replica_resends"]]
    mean = lambda rows, key: sum(row[key] for row in rows) / len(rows) if rows else None  # noqa: E731
    return {
        "jobs": len(jobs),
        "succeeded": sum(job["status"] == "succeeded" for job in jobs),
        "jobs_with_resends": len(resent),
        "resends": sum(job["replica_resends"] for job in jobs),
        "compute_tokens_mean_resent": mean(resent, "compute_tokens"),
        "compute_tokens_mean_not_resent": mean(clean, "compute_tokens"),
        "accuracy": mean(jobs, "correct"),
    }


async def measure(args: argparse.Namespace) -> dict:
    from harness.catalog import load_dataset

    problems = load_dataset(args.dataset, "test", args.questions, args.seed)
    fleet = Fleet.plan(Path(args.dir), model=args.model, replicas=2, workers=2, api_port=free_port())
    print(f"starting the fleet in {fleet.directory} ...", flush=True)
    await anyio.to_thread.run_sync(fleet.up)
    victim = fleet.member("vllm-0")
    victim_url = fleet.replica_urls[0]
    first: list[dict] = []
    second: list[dict] = []
    outage: list[dict] = []
    events: list[str] = []
    started = time.perf_counter()

    def note(text: str) -> None:
        events.append(f"{time.perf_counter() - started:.0f}s {text}")
        print(events[-1], flush=True)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(wave, fleet, problems, first)
            with anyio.fail_after(300):
                while not all([await busy(url) for url in fleet.replica_urls]):  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            note("both servers busy: SIGKILL vllm-0")
            fleet.kill(victim.name)
            await watch_outage(fleet, outage)
            note("restarting vllm-0")
            restart = time.perf_counter()
            await anyio.to_thread.run_sync(fleet.start, victim.name)
            note(f"vllm-0 ready again after {time.perf_counter() - restart:.0f} s")
        note(f"first wave done: {sum(j['status'] == 'succeeded' for j in first)}/{len(first)} succeeded")
        async with httpx.AsyncClient() as client:
            before = await server_counters(client, fleet.replica_urls)
        service = [m for m in fleet.members if m.name == "api" or m.name.startswith("worker-")]
        cpu_before = {m.name: cpu_seconds(m.pid) for m in service}
        await wave(fleet, problems, second)
        cpu = {m.name: cpu_seconds(m.pid) - cpu_before[m.name] for m in service}
        async with httpx.AsyncClient() as client:
            after = await server_counters(client, fleet.replica_urls)
        prompts = {url: after[url]["prompt"] - before[url]["prompt"] for url in fleet.replica_urls}
        note("second wave done")
    finally:
        fleet.down()
    return {
        "benchmark": "fleet_failover",
        "command": "python benchmarks/fleet_failover.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "strategy": SEARCH,
        "events": events,
        "first_wave": summarise(first),
        "during_outage": outage,
        "second_wave": summarise(second),
        "second_wave_prompt_share_of_restarted_replica": prompts[victim_url] / max(sum(prompts.values()), 1),
        "second_wave_service_cpu_seconds_per_job": {name: value / len(second) for name, value in cpu.items()},
        "rows": {"first": first, "second": second},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default="/tmp/ttc-fleet-failover")
    args = parser.parse_args()
    report = anyio.run(measure, args)
    path = RESULTS / f"fleet_failover-{args.model}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()

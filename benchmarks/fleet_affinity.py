"""What prefix affinity buys on a real fleet, read from the vLLM servers' own counters.

A fleet on this machine (``ttc fleet``: two CPU vLLM servers of one core each, a Redis server,
``ttc serve`` and two workers) runs the same tree searches (beam search and REBASE, 8 nodes a
depth) over the same test questions twice: with rendezvous affinity (every request of a tree to
one replica) and with a replica drawn per request (``TTC_REMOTE__ROUTING=random``). The API and
workers restart between the two; the servers keep running and their prefix caches are emptied
(``POST /reset_prefix_cache``) before every run, so each run starts cold. Batches alternate which
routing goes first. For each run, before and after: each server's ``/metrics`` (prefix-cache
queries and hits, prompt and generated tokens); for each job: its usage, wall time and answer.

Reported per routing and method: the servers' cache hit rate, compute tokens (uncached prompt +
generated) per question, wall time per question and accuracy, with the affinity/random ratio and
a paired bootstrap interval over questions (from the jobs' usage). Rows land per batch in
``results/fleet_affinity-<model>.jsonl`` (rerun to resume); ``--report`` recomputes from them.

    .venv/bin/python benchmarks/fleet_affinity.py --model smollm2-135m --questions 30
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.fleet import Fleet, free_port  # noqa: E402 (after the path: run as a script)

RESULTS = Path(__file__).parent / "results"
ROUTINGS = ("affinity", "random")
METHODS = {
    "beam_search": {"width": 4, "samples_per_beam": 2, "max_steps": 4, "step_max_tokens": 96},  # 8 a depth
    "rebase": {"width": 8, "max_steps": 4, "step_max_tokens": 96},
}
SERVER_COUNTERS = {
    "queries": "vllm:prefix_cache_queries_total",
    "hits": "vllm:prefix_cache_hits_total",
    "prompt": "vllm:prompt_tokens_total",
    "generated": "vllm:generation_tokens_total",
}


def rows_path(model: str) -> Path:
    return RESULTS / f"fleet_affinity-{model}.jsonl"


async def server_counters(client: httpx.AsyncClient, urls: list[str]) -> dict[str, dict[str, float]]:
    """Each server's cumulative counters (summed over label sets)."""
    from orchestrator.core.backends.remote import metric_totals

    found = {}
    for url in urls:
        totals = metric_totals((await client.get(f"{url}/metrics", timeout=10)).text)
        found[url] = {name: totals.get(metric, 0.0) for name, metric in SERVER_COUNTERS.items()}
    return found


async def reset_caches(client: httpx.AsyncClient, urls: list[str]) -> None:
    for url in urls:
        response = await client.post(f"{url}/reset_prefix_cache", timeout=30)
        response.raise_for_status()


async def run_job(client: httpx.AsyncClient, api: str, method: str, problem) -> dict:
    """Run one search through the API (the request waits for the job); its answer, usage and wall time."""
    body = {
        "question": problem.question,
        "strategy": method,
        "params": METHODS[method],
        "budget": {"max_tokens": 16_384, "deadline_s": 600},
    }
    started = time.perf_counter()
    response = await client.post(f"{api}/v1/reason", json=body, timeout=660)
    job = response.json()
    if "usage" not in job:  # an error answer, not a job: say so in the row
        raise RuntimeError(f"{problem.id}: HTTP {response.status_code} {response.text[:300]}")
    from verifiers.outcome import answers_match

    usage = job["usage"]
    return {
        "id": problem.id,
        "status": job["status"],
        "correct": bool(answers_match(job.get("answer"), problem.answer)),
        "compute_tokens": usage["compute_tokens"],
        "prompt_tokens": usage["prompt_tokens"],
        "cached_prompt_tokens": usage["cached_prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "kv_footprint_tokens": usage["kv_footprint_tokens"],
        "replica_resends": usage.get("replica_resends", 0),
        "seconds": time.perf_counter() - started,
    }


async def run_batch(fleet: Fleet, method: str, batch: list) -> dict:
    """One method over one batch (all its questions at once), between cold caches and counter reads."""
    async with httpx.AsyncClient() as client:
        await reset_caches(client, fleet.replica_urls)
        before = await server_counters(client, fleet.replica_urls)
        commands_before = redis_commands(fleet.redis_url)
        started = time.perf_counter()
        jobs: list[dict] = []

        async def one(problem) -> None:
            jobs.append(await run_job(client, fleet.api_url, method, problem))

        async with anyio.create_task_group() as group:
            for problem in batch:
                group.start_soon(one, problem)
        seconds = time.perf_counter() - started
        after = await server_counters(client, fleet.replica_urls)
        redis_ops = redis_commands(fleet.redis_url) - commands_before
    servers = {url: {k: after[url][k] - before[url][k] for k in SERVER_COUNTERS} for url in fleet.replica_urls}
    jobs.sort(key=lambda job: job["id"])
    return {"jobs": jobs, "servers": servers, "seconds": seconds, "redis_commands": redis_ops}


def redis_commands(url: str) -> int:
    """Commands the Redis server has processed so far (the API, the workers and their polling)."""
    import redis

    return int(redis.Redis.from_url(url).info("stats")["total_commands_processed"])


def use_routing(fleet: Fleet, routing: str) -> None:
    """Restart the API and the workers with ``routing`` (the servers and Redis keep running)."""
    movers = [m for m in fleet.members if m.name == "api" or m.name.startswith("worker-")]
    if all(m.env["TTC_REMOTE__ROUTING"] == routing for m in movers):
        return
    for member in movers:
        fleet.kill(member.name, sig=15)
        member.env["TTC_REMOTE__ROUTING"] = routing
    for member in movers:
        fleet.start(member.name, wait=False)
    for member in movers:
        fleet.wait_ready(member.name, 300)


async def measure(args: argparse.Namespace) -> None:
    from harness.catalog import load_dataset

    problems = load_dataset(args.dataset, "test", args.questions, args.seed)
    out = rows_path(args.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["batch"] for line in out.read_text().splitlines()} if out.exists() else set()
    batches = [problems[i : i + args.batch] for i in range(0, len(problems), args.batch)]
    if all(index in done for index in range(len(batches))):
        print(f"all {len(batches)} batches already run")
        return
    fleet = Fleet.plan(
        Path(args.dir), model=args.model, replicas=2, workers=2, api_port=free_port(), max_model_len=args.max_model_len
    )
    for member in fleet.members:
        if member.name.startswith("vllm-"):
            member.env["VLLM_SERVER_DEV_MODE"] = "1"  # for POST /reset_prefix_cache
    print(f"starting the fleet in {fleet.directory} ...", flush=True)
    fleet.up(on_ready=lambda name: print(f"  {name} ready", flush=True))
    try:
        for index, batch in enumerate(batches):
            if index in done:
                continue
            line: dict = {"batch": index, "runs": {}}
            for routing in ROUTINGS if index % 2 == 0 else ROUTINGS[::-1]:
                await anyio.to_thread.run_sync(use_routing, fleet, routing)
                for method in METHODS:
                    run = await run_batch(fleet, method, batch)
                    line["runs"][f"{routing}/{method}"] = run
                    hits = sum(s["hits"] for s in run["servers"].values())
                    queries = sum(s["queries"] for s in run["servers"].values())
                    print(
                        f"[batch {index + 1}/{len(batches)}] {routing:>8} {method:>11}: "
                        f"hit rate {hits / max(queries, 1):.2f}, {run['seconds']:.0f} s",
                        flush=True,
                    )
            with out.open("a") as file:  # a batch lands once both routings ran it
                file.write(json.dumps(line) + "\n")
    finally:
        fleet.down()


def summarise(lines: list[dict]) -> dict:
    """Per method: each routing's totals, and affinity over random with paired intervals."""
    report: dict = {}
    for method in METHODS:
        by_routing = {}
        for routing in ROUTINGS:
            runs = [line["runs"][f"{routing}/{method}"] for line in lines]
            jobs = [job for run in runs for job in run["jobs"]]
            servers = [s for run in runs for s in run["servers"].values()]
            total = {k: sum(s[k] for s in servers) for k in SERVER_COUNTERS}
            by_routing[routing] = {
                "questions": len(jobs),
                "server_hit_rate": total["hits"] / max(total["queries"], 1),
                "server_compute_tokens_per_question": (total["prompt"] - total["hits"] + total["generated"])
                / max(len(jobs), 1),
                "job_compute_tokens_per_question": sum(j["compute_tokens"] for j in jobs) / max(len(jobs), 1),
                "wall_seconds_per_question": sum(run["seconds"] for run in runs) / max(len(jobs), 1),
                "accuracy": sum(j["correct"] for j in jobs) / max(len(jobs), 1),
                "failed": sum(j["status"] != "succeeded" for j in jobs),
                "kv_footprint_tokens_per_question": sum(j["kv_footprint_tokens"] for j in jobs) / max(len(jobs), 1),
                "redis_commands_per_job": sum(run["redis_commands"] for run in runs) / max(len(jobs), 1),
            }
        pairs = _paired_jobs(lines, method)
        report[method] = {
            **by_routing,
            "compute_tokens_ratio_random_over_affinity": _ratio(pairs, "compute_tokens"),
            "wall_ratio_random_over_affinity": _batch_ratio(lines, method),
            "accuracy_difference_affinity_minus_random": _difference(pairs),
        }
    return report


def _paired_jobs(lines: list[dict], method: str) -> list[tuple[dict, dict]]:
    pairs = []
    for line in lines:
        random_jobs = {job["id"]: job for job in line["runs"][f"random/{method}"]["jobs"]}
        pairs += [(job, random_jobs[job["id"]]) for job in line["runs"][f"affinity/{method}"]["jobs"]]
    return pairs


def _bootstrap(count: int, statistic, draws: int = 4000) -> list[float]:
    rng = random.Random(0)
    values = sorted(statistic([rng.randrange(count) for _ in range(count)]) for _ in range(draws))
    return [values[int(0.025 * draws)], values[int(0.975 * draws) - 1]]


def _ratio(pairs: list[tuple[dict, dict]], key: str) -> dict:
    def statistic(picked: list[int]) -> float:
        affinity = sum(pairs[i][0][key] for i in picked)
        return sum(pairs[i][1][key] for i in picked) / max(affinity, 1)

    return {"value": statistic(list(range(len(pairs)))), "ci95": _bootstrap(len(pairs), statistic)}


def _batch_ratio(lines: list[dict], method: str) -> dict:
    """Wall time, random over affinity: batches run their questions together, so batches are resampled."""

    def statistic(picked: list[int]) -> float:
        affinity = sum(lines[i]["runs"][f"affinity/{method}"]["seconds"] for i in picked)
        return sum(lines[i]["runs"][f"random/{method}"]["seconds"] for i in picked) / max(affinity, 1e-9)

    return {"value": statistic(list(range(len(lines)))), "ci95": _bootstrap(len(lines), statistic)}


def _difference(pairs: list[tuple[dict, dict]]) -> dict:
    def statistic(picked: list[int]) -> float:
        return sum(pairs[i][0]["correct"] - pairs[i][1]["correct"] for i in picked) / max(len(picked), 1)

    return {"value": statistic(list(range(len(pairs)))), "ci95": _bootstrap(len(pairs), statistic)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5, help="questions run at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--dir", default="/tmp/ttc-fleet-affinity", help="the fleet's state, logs and Redis files")
    parser.add_argument("--report", action="store_true", help="only recompute the summary from the stored rows")
    args = parser.parse_args()
    if not args.report:
        anyio.run(measure, args)
    lines = [json.loads(line) for line in rows_path(args.model).read_text().splitlines()]
    report = {
        "benchmark": "fleet_affinity",
        "command": "python benchmarks/fleet_affinity.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "dataset": args.dataset,
        "methods": METHODS,
        "batches": len(lines),
        "summary": summarise(lines),
    }
    path = RESULTS / f"fleet_affinity-{args.model}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()

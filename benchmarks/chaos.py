"""Load and faults against the real thing: a fleet on loopback (``ttc fleet``: a real
`redis-server`, `ttc serve` (API only), 2 `ttc worker`, and with ``--replicas N`` N vLLM servers;
with 0 each worker runs its own engine), 64 concurrent clients of short jobs for 3 minutes, while
a worker is SIGKILLed (and started again), Redis is SIGKILLed and restarted on its append-only
file, and then an engine dies: a vLLM server SIGKILLed and started again (``--replicas``), or
one worker's engine core killed (embedded).

Clients behave as a careful client should: every submit carries an idempotency key and is
retried with the same key after a 503 or a lost connection; then the client polls its job.
At the end every accepted job is checked in Redis: finished, lost (never reached an end) or
duplicated (more than one result).

    .venv/bin/python benchmarks/chaos.py [--clients 64] [--seconds 180] [--replicas 2] [--model smollm2-135m]

Prints and saves ``benchmarks/results/chaos.json`` (``chaos-fleet.json`` with replicas).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import anyio
import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cli.fleet import Fleet, free_port

RESULTS = Path(__file__).parent / "results" / "chaos.json"
TERMINAL = {"succeeded", "failed", "cancelled"}
JOB = {"strategy": "direct", "params": {"max_tokens": 16, "temperature": 0.0}, "wait": False}


def rss_mib(pid: int) -> float:
    """Resident memory of the process itself (its engine core, a child, holds the preallocated KV
    cache and the weights: a constant, not what would grow with jobs)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    found, frontier = [], [pid]
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    while frontier:
        kids = parents.get(frontier.pop(), [])
        found += kids
        frontier += kids
    return found


def engine_core_of(pid: int) -> int | None:
    for child in children(pid):
        try:
            if b"EngineCore" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            continue
    return None


class Load:
    """The clients and what they saw."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.statuses: Counter[int] = Counter()
        self.connection_errors = 0
        self.accepted: set[str] = set()
        self.latencies: list[float] = []
        self.sent = 0

    async def client(self, index: int, stop_at: float) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:
            n = 0
            while anyio.current_time() < stop_at:
                n += 1
                body = {"question": f"What is {index} + {n}?", "idempotency_key": uuid.uuid4().hex, **JOB}
                started = anyio.current_time()
                job_id = await self._submit(http, body)
                if job_id is None:
                    continue
                self.accepted.add(job_id)
                if await self._wait(http, job_id):
                    self.latencies.append(anyio.current_time() - started)

    async def _submit(self, http: httpx.AsyncClient, body: dict) -> str | None:
        for _ in range(120):  # a minute of retries at most
            self.sent += 1
            try:
                response = await http.post("/v1/reason", json=body)
            except httpx.HTTPError:
                self.connection_errors += 1
                await anyio.sleep(0.5)
                continue
            self.statuses[response.status_code] += 1
            if response.status_code == 202:
                return response.json()["job_id"]
            if response.status_code != 503:
                return None
            await anyio.sleep(float(response.headers.get("retry-after", "1")) / 5)
        return None

    async def _wait(self, http: httpx.AsyncClient, job_id: str) -> bool:
        with anyio.move_on_after(240):
            while True:
                await anyio.sleep(0.5)
                self.sent += 1
                try:
                    response = await http.get(f"/v1/jobs/{job_id}")
                except httpx.HTTPError:
                    self.connection_errors += 1
                    continue
                self.statuses[response.status_code] += 1
                if response.status_code == 200 and response.json()["status"] in TERMINAL:
                    return True
        return False


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


def reconcile(port: int, accepted: set[str]) -> dict:
    """What Redis says became of every accepted job."""
    client = redis.Redis(port=port, decode_responses=True)
    outcomes: Counter[str] = Counter()
    duplicated = lost = 0
    for job_id in accepted:
        raw = client.get(f"ttc:job:{job_id}")
        status = json.loads(raw)["status"] if raw else "missing"
        outcomes[status] += 1
        results = sum(
            json.loads(fields["event"]).get("type") == "result"
            for _, fields in client.xrange(f"ttc:job:{job_id}:events")
        )
        duplicated += results > 1
        lost += status not in TERMINAL
    stats = client.hgetall("ttc:stats:jobs")
    counted = sum(float(value) for name, value in stats.items() if name.startswith("jobs|"))
    return {"outcomes": dict(outcomes), "duplicated": duplicated, "lost": lost, "finished_counted": counted}


def plan_fleet(args: argparse.Namespace, workdir: Path) -> Fleet:
    env = {
        "TTC_JOB_STALE_AFTER_S": "5",
        "TTC_WORKER_CONCURRENCY": "32",
        "TTC_ENGINE__CPU_KV_CACHE_SPACE_GIB": "1",
        "VLLM_LOGGING_LEVEL": "WARNING",
    }
    return Fleet.plan(workdir, model=args.model, replicas=args.replicas, workers=2, api_port=free_port(), extra_env=env)


def rss(fleet: Fleet) -> dict[str, float]:
    """MiB resident in the API and in each worker (the Python process alone)."""
    return {m.name: rss_mib(m.pid) for m in fleet.members if m.pid and (m.name == "api" or "worker" in m.name)}


async def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ttc-chaos-"))
    fleet = plan_fleet(args, workdir)
    redis_port = int(fleet.redis_url.rsplit(":", 1)[1].split("/")[0])
    events: list[str] = []
    try:
        await anyio.to_thread.run_sync(fleet.up)
        load = Load(fleet.api_url)
        rss_start = rss(fleet)
        started = anyio.current_time()

        def note(text: str) -> None:
            events.append(f"{anyio.current_time() - started:.0f}s {text}")

        async def faults() -> None:
            third = args.seconds / 4
            await anyio.sleep(third)
            note("SIGKILL worker-0 (and start it again)")
            fleet.kill("worker-0")
            fleet.start("worker-0", wait=False)
            await anyio.sleep(third)
            note("SIGKILL redis-server; restart after 5 s")
            fleet.kill("redis")
            await anyio.sleep(5)
            await anyio.to_thread.run_sync(fleet.start, "redis")
            await anyio.sleep(third - 5)
            if args.replicas:
                note("SIGKILL vllm-0 (and start it again)")
                fleet.kill("vllm-0")
                await anyio.to_thread.run_sync(fleet.start, "vllm-0")
                note("vllm-0 ready again")
            else:
                core = engine_core_of(fleet.member("worker-1").pid)
                note(f"SIGKILL worker-1's engine core ({core})")
                if core is not None:
                    os.kill(core, signal.SIGKILL)

        async with anyio.create_task_group() as group:
            group.start_soon(faults)
            for index in range(args.clients):
                group.start_soon(load.client, index, started + args.seconds)
        rss_end = rss(fleet)
        found = reconcile(redis_port, load.accepted)
    finally:
        fleet.down()
    by_class = Counter(f"{status // 100}xx" for status in load.statuses.elements())
    return {
        "command": "python benchmarks/chaos.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "replicas": args.replicas,
        "clients": args.clients,
        "seconds": args.seconds,
        "faults": events,
        "requests_sent": load.sent,
        "responses": dict(sorted(by_class.items())),
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "connection_errors": load.connection_errors,
        "5xx_other_than_503": sum(v for k, v in load.statuses.items() if k >= 500 and k != 503),
        "jobs_accepted": len(load.accepted),
        "jobs_finished": sum(found["outcomes"].get(s, 0) for s in TERMINAL),
        "job_outcomes": found["outcomes"],
        "finished_counted_in_stats": found["finished_counted"],
        "duplicated": int(found["duplicated"]),
        "lost": int(found["lost"]),
        "latency_p50_s": percentile(load.latencies, 0.5),
        "latency_p99_s": percentile(load.latencies, 0.99),
        "rss_mib_start": {k: round(v) for k, v in rss_start.items()},
        "rss_mib_end": {k: round(v) for k, v in rss_end.items()},
        "rss_note": "the Python process alone (an engine core holds a fixed KV cache); worker-0 is a new "
        "process after its SIGKILL, so its start and end are different processes",
        "logs": str(workdir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--replicas", type=int, default=0, help="vLLM servers (0: each worker runs its own engine)")
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    result = anyio.run(run, args)
    print(json.dumps(result, indent=2))
    path = RESULTS.with_name("chaos-fleet.json") if args.replicas else RESULTS
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

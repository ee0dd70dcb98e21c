"""Prometheus metrics: this API process's requests, every worker's finished jobs, the engine.

Request counts are per process (scrape every replica). Job figures (tokens by kind,
outcomes, budget exhaustions, per-strategy latency) are read from Redis at scrape time,
so they include jobs run by separate ``ttc worker`` processes, and every replica reports
the same totals.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.core.store.jobstats import LATENCY_BUCKETS_S, JobStats

REGISTRY = CollectorRegistry()
REQUESTS = Counter("ttc_http_requests", "HTTP requests", ["route", "status"], registry=REGISTRY)
PREFIX_HIT_RATE = Gauge("ttc_engine_prefix_cache_hit_rate", "Engine prefix-cache hit rate", registry=REGISTRY)
KV_USAGE = Gauge("ttc_engine_kv_cache_usage", "Engine KV-cache blocks in use (0..1)", registry=REGISTRY)
RUNNING = Gauge("ttc_engine_requests_running", "Engine requests running", registry=REGISTRY)
REPLICA_UP = Gauge(
    "ttc_engine_replica_up", "1 while a vLLM server of the fleet answers /health", ["replica"], registry=REGISTRY
)

router = APIRouter()


class JobStatsCollector(Collector):
    """Exposes one snapshot of the job counters read from Redis."""

    def __init__(self, stats: JobStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        tokens = CounterMetricFamily("ttc_tokens", "Tokens spent by finished jobs", labels=["kind"])
        for kind, value in sorted(stats.tokens.items()):
            tokens.add_metric([kind], value)
        jobs = CounterMetricFamily("ttc_jobs", "Finished jobs", labels=["strategy", "status"])
        for (strategy, status), value in sorted(stats.jobs.items()):
            jobs.add_metric([strategy, status], value)
        exhausted = CounterMetricFamily("ttc_budget_exhaustions", "Jobs stopped by a budget limit", labels=["limit"])
        for limit, value in sorted(stats.exhausted.items()):
            exhausted.add_metric([limit], value)
        latency = HistogramMetricFamily(
            "ttc_strategy_latency_seconds", "Wall time of a job's strategy", labels=["strategy"]
        )
        for strategy, buckets in sorted(stats.latency_buckets.items()):
            latency.add_metric(
                [strategy],
                [(floatToGoString(bound), buckets.get(bound, 0.0)) for bound in LATENCY_BUCKETS_S],
                sum_value=stats.latency_sum.get(strategy, 0.0),
            )
        yield from (tokens, jobs, exhausted, latency)


class RequestCounter:
    """Pure ASGI middleware: one count per request, by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            REQUESTS.labels(getattr(route, "path", "unmatched"), str(status["code"])).inc()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus exposition; the engine's counters and the job counters are read at scrape time."""
    runtime = request.app.state.runtime
    counters = await runtime.backend.counters()
    PREFIX_HIT_RATE.set(counters.prefix_cache_hit_rate)
    KV_USAGE.set(counters.kv_cache_usage)
    RUNNING.set(counters.requests_running)
    for replica, state in (await runtime.backend.replica_health()).items():
        REPLICA_UP.labels(replica).set(1.0 if state == "up" else 0.0)
    jobs = CollectorRegistry()
    jobs.register(JobStatsCollector(await runtime.store.job_stats()))
    page = generate_latest(REGISTRY) + generate_latest(jobs)
    return Response(page, media_type=CONTENT_TYPE_LATEST)

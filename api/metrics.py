"""Prometheus metrics of the API process (and of its embedded worker's jobs).

Separate ``ttc worker`` processes count the jobs they run in their own registry; scrape
the API for request-level figures and the engine for its own.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry()
REQUESTS = Counter("ttc_http_requests", "HTTP requests", ["route", "status"], registry=REGISTRY)
TOKENS = Counter("ttc_tokens", "Tokens spent by finished jobs", ["kind"], registry=REGISTRY)
EXHAUSTED = Counter("ttc_budget_exhaustions", "Jobs stopped by a budget limit", ["limit"], registry=REGISTRY)
JOBS = Counter("ttc_jobs", "Finished jobs", ["strategy", "status"], registry=REGISTRY)
LATENCY = Histogram(
    "ttc_strategy_latency_seconds",
    "Wall time of a job's strategy",
    ["strategy"],
    buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320),
    registry=REGISTRY,
)
PREFIX_HIT_RATE = Gauge("ttc_engine_prefix_cache_hit_rate", "Engine prefix-cache hit rate", registry=REGISTRY)
KV_USAGE = Gauge("ttc_engine_kv_cache_usage", "Engine KV-cache blocks in use (0..1)", registry=REGISTRY)
RUNNING = Gauge("ttc_engine_requests_running", "Engine requests running", registry=REGISTRY)

router = APIRouter()


def record_job(job) -> None:
    """Count a finished job: tokens by kind, its latency, a budget exhaustion if any."""
    usage = job.usage
    TOKENS.labels("prompt").inc(usage.prompt_tokens - usage.cached_prompt_tokens)
    TOKENS.labels("cached_prompt").inc(usage.cached_prompt_tokens)
    TOKENS.labels("completion").inc(usage.completion_tokens)
    JOBS.labels(job.strategy, job.status).inc()
    LATENCY.labels(job.strategy).observe(usage.wall_time_s)
    if usage.budget_exhausted:
        EXHAUSTED.labels(usage.budget_exhausted).inc()


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
    """Prometheus exposition, with the engine's counters read at scrape time."""
    counters = await request.app.state.runtime.backend.counters()
    PREFIX_HIT_RATE.set(counters.prefix_cache_hit_rate)
    KV_USAGE.set(counters.kv_cache_usage)
    RUNNING.set(counters.requests_running)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

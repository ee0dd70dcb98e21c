"""API keys, quotas, size limits and metrics: the real app and real Redis in this process,
with the scripted backend (this is pure API logic; generation is tested on the engine)."""

from __future__ import annotations

import anyio
import httpx

from orchestrator.core.budget import Usage
from orchestrator.core.store import JobRecord


async def test_open_until_a_key_exists_then_keys_are_required(api) -> None:
    base, store = api
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        assert (await client.post("/v1/reason", json={"question": "3 + 4?"})).status_code == 200
        plaintext, record = await store.create_api_key("team-a")
        missing = await client.post("/v1/reason", json={"question": "3 + 4?"})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        wrong = await client.post("/v1/reason", json={"question": "q"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await client.post(
            "/v1/reason", json={"question": "3 + 4?"}, headers={"Authorization": f"Bearer {plaintext}"}
        )
        assert ok.status_code == 200 and ok.json()["answer"] == "7"
        assert (await client.get("/healthz")).status_code == 200  # probes stay open
    raw = await store.redis.hgetall(store.keys.api_keys())
    assert plaintext not in str(raw) and record.id in str(raw)  # only the hash is stored


async def test_oversized_bodies_are_refused(api) -> None:
    base, _ = api
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        big = await client.post("/v1/reason", json={"question": "x" * 10_000})
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"


async def test_metrics_count_requests_tokens_and_latency(api) -> None:
    base, _ = api
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(2):  # the second asks the same prompt: all of it is a prefix-cache hit
            await client.post("/v1/reason", json={"question": "3 + 4?", "strategy": "best_of_n", "params": {"n": 2}})
        page = (await client.get("/metrics")).text
    assert 'ttc_http_requests_total{route="/v1/reason",status="200"}' in page
    assert 'ttc_tokens_total{kind="completion"}' in page
    assert 'ttc_strategy_latency_seconds_count{strategy="best_of_n"}' in page
    assert "\nttc_engine_prefix_cache_hit_rate 0.5\n" in page  # read from the backend at scrape time


async def test_metrics_include_jobs_finished_by_other_worker_processes(api) -> None:
    base, store = api
    job = await store.create_job(JobRecord(question="q", strategy="beam_search"))
    job = await store.claim_job(job.id, "worker-elsewhere")  # as a separate `ttc worker` would
    job.status, job.answer = "succeeded", "7"
    job.usage = Usage(prompt_tokens=50, cached_prompt_tokens=20, completion_tokens=300, wall_time_s=3.0)
    job.usage.budget_exhausted = "tokens"
    assert await store.finish_job(job, "worker-elsewhere")
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        page = (await client.get("/metrics")).text
    assert 'ttc_jobs_total{status="succeeded",strategy="beam_search"} 1.0' in page
    assert 'ttc_tokens_total{kind="completion"} 300.0' in page
    assert 'ttc_tokens_total{kind="prompt"} 30.0' in page
    assert 'ttc_budget_exhaustions_total{limit="tokens"} 1.0' in page
    assert 'ttc_strategy_latency_seconds_bucket{le="2.0",strategy="beam_search"} 0.0' in page
    assert 'ttc_strategy_latency_seconds_bucket{le="5.0",strategy="beam_search"} 1.0' in page
    assert 'ttc_strategy_latency_seconds_sum{strategy="beam_search"} 3.0' in page


async def test_openapi_is_published_with_the_error_envelope(api) -> None:
    base, _ = api
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        spec = (await client.get("/openapi.json")).json()
    assert {
        "/v1/reason",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/events",
        "/v1/strategies",
        "/v1/chat/completions",
    } <= set(spec["paths"])
    assert "ErrorEnvelope" in spec["components"]["schemas"]


async def test_a_client_that_disconnects_cancels_its_job(api) -> None:
    base, store = api
    slow = {"question": "slow please", "params": {"max_tokens": 64}}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        with anyio.move_on_after(1.0):  # the client gives up and closes the connection
            await client.post("/v1/reason", json=slow)
    [job_id] = await store.redis.zrevrange(store.keys.jobs_by_time(), 0, 0)
    with anyio.fail_after(10):
        while (await store.get_job(job_id)).status not in {"cancelled"}:  # noqa: ASYNC110
            await anyio.sleep(0.1)

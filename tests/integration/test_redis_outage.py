"""Redis SIGKILLed under load and restarted on its append-only file: the API answers 503 with
Retry-After meanwhile, the worker waits it out, and every accepted job finishes exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import anyio
import httpx
import uvicorn
from redis.exceptions import RedisError

from api.app import create_app
from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.settings import Settings
from orchestrator.core.store import Store, open_redis
from service.runtime import Runtime
from tests.conftest import free_port
from tests.integration.conftest import answer_seven
from tests.redis_process import RedisProcess
from tests.sessions import VERIFIERS

CLIENTS = 8


async def _jobs(store: Store, ids: set[str]) -> list:
    return [await store.get_job(job_id) for job_id in ids]


async def _unfinished(store: Store, ids: set[str]) -> list | None:
    """The accepted jobs not succeeded yet; None if the test's own connection dropped (it reconnects
    on the next call: what is under test is the service, not this reader)."""
    try:
        return [job for job in await _jobs(store, ids) if job.status != "succeeded"]
    except (RedisError, OSError):
        return None


async def test_accepted_jobs_finish_exactly_once_across_a_redis_kill(tmp_path) -> None:
    server = RedisProcess(tmp_path, free_port())
    server.start()
    settings = Settings(redis_url=server.url, job_stale_after_s=1.0, worker_concurrency=16)
    connection = await open_redis(settings.redis_url, settings.data_dir)
    store = Store(connection, settings.redis_namespace)
    backend = ScriptedBackend(answer_seven, delay_s=0.1)
    port = free_port()
    app = create_app(settings, Runtime(settings, backend, store, VERIFIERS))
    web = uvicorn.Server(uvicorn.Config(app, port=port, log_level="critical"))
    serving = asyncio.get_running_loop().create_task(web.serve())
    accepted: set[str] = set()
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()
    try:
        while not web.started:  # noqa: ASYNC110 (uvicorn has no start-up event)
            await anyio.sleep(0.05)

        async def client(stop_at: float) -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                while anyio.current_time() < stop_at:
                    body = {"question": "3 + 4?", "wait": False, "idempotency_key": uuid.uuid4().hex}
                    while True:  # a client retries a 503 with the same idempotency key
                        response = await http.post("/v1/reason", json=body)
                        statuses[response.status_code] += 1
                        if response.status_code != 503:
                            break
                        retry_after.add(response.headers.get("retry-after", ""))
                        await anyio.sleep(0.2)
                    assert response.status_code == 202, response.text
                    accepted.add(response.json()["job_id"])
                    await anyio.sleep(0.25)  # a steady load the worker keeps up with

        async with anyio.create_task_group() as group:
            stop_at = anyio.current_time() + 6
            for _ in range(CLIENTS):
                group.start_soon(client, stop_at)
            await anyio.sleep(2)
            await anyio.to_thread.run_sync(server.kill)
            await anyio.sleep(1.5)
            await anyio.to_thread.run_sync(server.start)
        with anyio.move_on_after(60):
            while (await _unfinished(store, accepted)) != []:  # noqa: ASYNC110
                await anyio.sleep(0.5)
        unfinished = [
            (j.id, j.status, j.attempts, j.owner) for j in await _jobs(store, accepted) if j.status != "succeeded"
        ]
        pending = await store.redis.xpending(store.keys.job_stream(), "workers")
        assert not unfinished, (unfinished, pending, await store.redis.xlen(store.keys.job_stream()))
        results = Counter()
        for job_id in accepted:
            events = await store.redis.xrange(store.keys.job_events(job_id))
            results[sum(json.loads(fields["event"])["type"] == "result" for _, fields in events)] += 1
        finished = sum(count for (_, status), count in (await store.job_stats()).jobs.items() if status == "succeeded")
    finally:
        web.should_exit = True
        await serving
        await connection.aclose()
        server.stop()
    assert statuses[503] > 0 and retry_after == {"5"}  # the outage was seen, and said when to retry
    assert set(statuses) <= {202, 503}  # no 500s
    assert len(accepted) > 20
    assert results == Counter({1: len(accepted)})  # every accepted job has exactly one result
    assert finished == len(accepted)  # and was counted as finished exactly once

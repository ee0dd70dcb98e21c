"""The store against real Redis (the embedded redis-server)."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.core.budget import Budget, Usage
from orchestrator.core.errors import InvalidRequestError, NotFoundError, StoreUnavailableError
from orchestrator.core.store import JobRecord, Store, open_redis


async def test_job_round_trip(store: Store) -> None:
    job = JobRecord(question="What is 7 + 5?", budget=Budget(max_tokens=100))
    await store.create_job(job)
    claimed = await store.claim_job(job.id, "worker-1")
    claimed.status, claimed.answer, claimed.usage = "succeeded", "12", Usage(prompt_tokens=5, completion_tokens=7)
    assert await store.finish_job(claimed, "worker-1")
    loaded = await store.get_job(job.id)
    assert loaded.status == "succeeded" and loaded.answer == "12"
    assert loaded.usage.total_tokens == 12 and loaded.budget.max_tokens == 100
    assert await store.redis.zrange(store.keys.jobs_by_time(), 0, -1) == [job.id]


async def test_creating_an_existing_job_never_overwrites_it(store: Store) -> None:
    job = JobRecord(question="original")
    await store.create_job(job)
    with pytest.raises(InvalidRequestError, match="already exists"):
        await store.create_job(JobRecord(id=job.id, question="impostor"))
    assert (await store.get_job(job.id)).question == "original"


async def test_unknown_and_malformed_ids_are_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.get_job("job-does-not-exist")
    with pytest.raises(NotFoundError):
        await store.get_job("no such id!")
    with pytest.raises(NotFoundError):
        await store.request_cancel(JobRecord(question="never created").id)


async def test_an_idempotency_key_names_the_first_claimant_only(store: Store) -> None:
    assert await store.claim_idempotency("job", None, "key-1", "job-a") == "job-a"  # unused: the claimant's
    assert await store.claim_idempotency("job", None, "key-1", "job-b") == "job-a"  # the concurrent twin loses
    assert await store.claim_idempotency("context", None, "key-1", "ctx-c") == "ctx-c"  # scopes do not share keys
    assert await store.claim_idempotency("job", "key-other", "key-1", "job-d") == "job-d"  # nor do tenants


async def test_namespaces_are_isolated(redis_connection) -> None:
    first, second = Store(redis_connection, "ns-a"), Store(redis_connection, "ns-b")
    job = await first.create_job(JobRecord(question="q"))
    with pytest.raises(NotFoundError):
        await second.get_job(job.id)


async def test_embedded_redis_persists_across_restarts(tmp_path) -> None:
    connection = await open_redis(None, tmp_path)
    job = await Store(connection).create_job(JobRecord(question="keep me"))
    await connection.aclose()
    reopened = await open_redis(None, tmp_path)
    try:
        assert (await Store(reopened).get_job(job.id)).question == "keep me"
    finally:
        await reopened.aclose()


async def test_the_embedded_server_stops_once_a_closing_client_is_gone(tmp_path) -> None:
    """A client hanging up just after the close counts its clients (the server had not reaped a
    socket yet) must not keep the server alive; one that stays connected does."""
    import psutil
    import redis

    connection = await open_redis(None, tmp_path)
    server = psutil.Process(connection._embedded.pid)
    late = redis.Redis(unix_socket_path=connection._embedded.socket_file)
    late.ping()
    async with anyio.create_task_group() as group:
        group.start_soon(connection.aclose)
        await anyio.sleep(0.3)
        late.close()
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE

    connection = await open_redis(None, tmp_path)
    server = psutil.Process(connection._embedded.pid)
    staying = redis.Redis(unix_socket_path=connection._embedded.socket_file)
    staying.ping()  # another process's client, still working
    await connection.aclose()
    assert server.is_running()
    staying.shutdown(nosave=False)


async def test_unreachable_redis_names_the_setting() -> None:
    with pytest.raises(StoreUnavailableError, match="REDIS_URL"):
        await open_redis("redis://127.0.0.1:1/0", data_dir=None)  # type: ignore[arg-type]

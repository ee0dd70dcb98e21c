"""An engine that dies, one that cannot be rebuilt, one stopping with its process, and a replica
that is down: the job is run once more, the failure is named, nothing is rebuilt on the way out,
and a tree moves to the next replica."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from orchestrator.core.backends import inprocess
from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.backends.inprocess import InProcessBackend
from orchestrator.core.backends.remote import RemoteBackend
from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.backends.vllm_http import replica_order
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.errors import BackendUnavailableError, EngineDiedError
from orchestrator.core.rendering import ChatRenderer
from orchestrator.core.settings import RemoteOptions, Settings
from service.runtime import Runtime
from tests.conftest import ENGINE_OPTIONS, free_port
from tests.integration.conftest import answer_seven
from tests.sessions import VERIFIERS


class DiesOnce(ScriptedBackend):
    """The engine dies under request number ``at`` (the first by default), then serves (a rebuilt engine)."""

    def __init__(self, at: int = 1) -> None:
        super().__init__(answer_seven)
        self.deaths, self.requests, self.at = 0, 0, at

    async def _generate_one(self, token_ids, sampling, request_id, tree_id):
        self.requests += 1
        if self.deaths == 0 and self.requests == self.at:
            self.deaths += 1
            raise EngineDiedError("the inference engine died while this request was running")
        return await super()._generate_one(token_ids, sampling, request_id, tree_id)


@pytest.mark.parametrize("retry", [True, False])
async def test_a_job_whose_engine_dies_runs_once_more_unless_asked_not_to(store, retry: bool) -> None:
    runtime = Runtime(Settings(), DiesOnce(), store, VERIFIERS)
    job = await runtime.submit("3 + 4?", strategy="best_of_n", params={"n": 2}, retry_engine_death=retry)
    done = await runtime.run_inline(job)
    events = [event for _, event in await store.read_events(job.id)]
    if retry:
        assert done.status == "succeeded" and done.answer == "7"
        assert [e["reason"] for e in events if e["type"] == "retry"] == ["engine_died"]
    else:
        assert done.status == "failed" and done.error["code"] == "engine_died"


async def test_both_attempts_of_a_retried_job_are_charged(store) -> None:
    # two waves of two samples; the engine dies under the second wave of the first attempt, after
    # the first wave's samples were decoded: the bill is a whole clean run plus that first wave
    params = {"n": 4, "wave_size": 2}
    clean = Runtime(Settings(), ScriptedBackend(answer_seven), store, VERIFIERS)
    clean_run = await clean.run_inline(await clean.submit("3 + 4?", strategy="best_of_n", params=params))
    dies = DiesOnce(at=2)
    runtime = Runtime(Settings(), dies, store, VERIFIERS)
    done = await runtime.run_inline(await runtime.submit("3 + 4?", strategy="best_of_n", params=params))
    assert done.status == "succeeded" and dies.deaths == 1
    first_wave = clean_run.usage.completion_tokens // 2
    assert done.usage.completion_tokens == clean_run.usage.completion_tokens + first_wave
    assert done.usage.model_calls == clean_run.usage.model_calls + 1


@pytest.fixture
def unbuilt_backend(model_dir, monkeypatch) -> InProcessBackend:
    """The real backend class with a stand-in engine: what happens around a rebuild is pure logic."""
    monkeypatch.setattr(inprocess, "DEATH_GRACE_S", 0.0)
    monkeypatch.setattr(inprocess, "REBUILD_PAUSE_S", 0.0)

    async def nothing_to_shut_down(engine) -> None:
        return None

    monkeypatch.setattr(inprocess, "shut_down_engine", nothing_to_shut_down)
    backend = InProcessBackend(str(model_dir), ChatRenderer.from_pretrained(model_dir), ENGINE_OPTIONS)
    backend._engine = object()
    backend._ready.set()
    return backend


async def test_an_engine_that_cannot_be_rebuilt_gives_up_and_says_so(unbuilt_backend, monkeypatch) -> None:
    builds: list[int] = []

    def broken_build():
        builds.append(1)
        raise BackendUnavailableError("the vLLM engine failed to start (out of memory)")

    monkeypatch.setattr(unbuilt_backend, "_construct_engine", broken_build)
    unbuilt_backend._schedule_restart(unbuilt_backend._engine)
    prompt = unbuilt_backend.renderer.render_question("2 + 2?")
    with anyio.fail_after(10), pytest.raises(EngineDiedError, match="could not be rebuilt in 3 tries"):
        await unbuilt_backend.generate([prompt], SamplingSettings(max_tokens=4))  # waits, then is told why
    assert len(builds) == inprocess.REBUILD_TRIES
    with pytest.raises(EngineDiedError, match="out of memory"):
        await unbuilt_backend.health()  # what /readyz answers
    await unbuilt_backend.aclose()


async def test_a_stopping_process_never_rebuilds_its_engine(unbuilt_backend, monkeypatch) -> None:
    builds: list[int] = []
    monkeypatch.setattr(unbuilt_backend, "_construct_engine", lambda: builds.append(1))
    unbuilt_backend.stopping()  # a signal arrived; the engine core dies of the same signal
    unbuilt_backend._schedule_restart(unbuilt_backend._engine)
    prompt = unbuilt_backend.renderer.render_question("2 + 2?")
    with anyio.fail_after(10), pytest.raises(BackendUnavailableError, match="stopping"):
        await unbuilt_backend.generate([prompt], SamplingSettings(max_tokens=4))
    await unbuilt_backend.aclose()
    assert builds == [] and unbuilt_backend._engine is None


async def test_a_tree_pinned_to_a_dead_replica_moves_to_the_next(vllm_server, model_dir) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    backend = await RemoteBackend.connect(RemoteOptions(urls=[vllm_server]), tokenizer=str(model_dir))
    backend.base_urls = [dead, vllm_server]  # the dead one joins after start-up, as a replica dies
    try:
        tree = next(f"tree-{i}" for i in range(100) if replica_order(backend.base_urls, f"tree-{i}")[0] == dead)
        prompt = backend.renderer.render_question("2 + 2?")
        [result] = await backend.generate([prompt], SamplingSettings(max_tokens=4), tree_id=tree)
        assert result.completion_tokens > 0 and result.resends == 0  # it never reached the dead one
        counters = await backend.counters()  # /metrics reads these: a dead replica is skipped, not a 500
        assert counters.prefix_cache_queries > 0
        await backend.health()  # ready while one replica answers ...
        states = await backend.replica_health()  # ... and /readyz names the one that is down
        assert states[vllm_server] == "up" and states[dead].startswith("down: unreachable")
        backend.base_urls = [dead]
        with pytest.raises(BackendUnavailableError, match=dead.split("//")[1]):
            await backend.health()
    finally:
        await backend.aclose()


@asynccontextmanager
async def replica_that_drops_requests() -> AsyncIterator[str]:
    """A server that accepts each request and closes the connection without answering: what a
    client sees when a vLLM server is killed while running its request."""

    async def drop(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, drop)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            group.cancel_scope.cancel()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_request_whose_replica_dies_under_it_is_resent_and_charged_again(
    vllm_server, model_dir, store, stream: bool
) -> None:
    backend = await RemoteBackend.connect(RemoteOptions(urls=[vllm_server]), tokenizer=str(model_dir))
    try:
        async with replica_that_drops_requests() as dying:
            backend.base_urls = [dying, vllm_server]
            tree = next(f"tree-{i}" for i in range(100) if replica_order(backend.base_urls, f"tree-{i}")[0] == dying)
            meter = BudgetMeter(Budget(), backend.model.shape)
            runtime = Runtime(Settings(), backend, store, VERIFIERS)
            session = runtime.session(meter)
            session.tree_id = tree
            prompt = backend.renderer.render_question("2 + 2?")
            stop = (lambda logprobs: False) if stream else None
            sampling = SamplingSettings(max_tokens=4, logprobs=1 if stream else None)
            [result] = await session.generate([prompt], sampling, stop_when=stop)
            assert result.completion_tokens > 0 and result.resends == 1
            assert meter.snapshot().replica_resends == 1 and meter.snapshot().model_calls == 1
            backend.base_urls = [dying]
            with pytest.raises(BackendUnavailableError, match="could"):
                await session.generate([prompt], sampling, stop_when=stop)
    finally:
        await backend.aclose()


async def test_random_routing_spreads_one_trees_requests() -> None:
    replicas = ["http://a:8000", "http://b:8000", "http://c:8000"]
    pinned = RemoteBackend(replicas, "m", None, None, None)  # type: ignore[arg-type]
    spread = RemoteBackend(replicas, "m", None, None, None, routing="random")  # type: ignore[arg-type]
    assert {pinned._replicas_for("tree-1")[0] for _ in range(30)} == {replica_order(replicas, "tree-1")[0]}
    firsts = [spread._replicas_for("tree-1") for _ in range(60)]
    assert {order[0] for order in firsts} == set(replicas) and all(sorted(o) == replicas for o in firsts)


def test_replica_order_starts_with_the_pinned_replica() -> None:
    replicas = [f"http://r{i}:8000" for i in range(4)]
    order = replica_order(replicas, "tree-7")
    assert sorted(order) == sorted(replicas) and len(set(order)) == 4
    assert replica_order(replicas[::-1], "tree-7") == order

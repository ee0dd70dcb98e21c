"""Schemathesis fuzzes every operation of the published OpenAPI spec: no server errors.

The real app and real Redis, with the scripted backend so thousands of requests stay cheap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for_http

pytestmark = [pytest.mark.subprocess]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.skipif(not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None, reason="needs schemathesis")
def test_no_operation_answers_with_a_server_error(tmp_path: Path) -> None:
    port = free_port()
    with (tmp_path / "server.log").open("w") as log:  # the server keeps its own copy of the descriptor
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.scripted_server", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", 60, server)
        command = [
            str(SCHEMATHESIS) if SCHEMATHESIS.exists() else "schemathesis",
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--request-timeout",
            "30",
            "--exclude-path",
            "/v1/jobs/{job_id}/events",  # an endless stream for unknown-but-valid ids
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=420)  # inside pytest's 600 s
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    finally:
        server.terminate()
        server.wait(30)
        log.close()

"""The serving default, end to end: pulled and checked against its pin, then served as ``make run``
serves it (an embedded engine, its demo question answered over HTTP) and stopped with Ctrl-C.

The rest of the suite runs on the small model for speed, and the live-server test on a shared
`vllm serve`; this is the one place the default runs, and where an embedded engine is stopped by
the signal that reaches its whole process group.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from orchestrator.core.model_catalog import CATALOGUE, DEFAULT_MODEL, ensure_model, model_identity, pulled_record
from orchestrator.core.settings import Settings
from tests.conftest import free_port
from tests.integration.test_cli_and_server import start_server, stop_server, ttc_env

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.subprocess]


def test_make_run_serves_the_default_model_answers_its_demo_question_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    pulled = ensure_model(Settings().model_cache_dir, DEFAULT_MODEL)  # `make install` pulled it already
    record = pulled_record(pulled)
    assert record is not None and record["gguf_sha256"] == CATALOGUE[DEFAULT_MODEL].sha256
    assert model_identity(str(pulled)) == DEFAULT_MODEL
    env = ttc_env(tmp_path, TTC_ENGINE__MAX_MODEL_LEN="1024")
    del env["TTC_MODEL"]  # what a user who sets nothing gets
    port = free_port()
    server = start_server(tmp_path, port, "default", env, "--demo-question", "What is 7 + 5?")
    log = tmp_path / "default.log"
    try:
        deadline = time.monotonic() + 500
        while "(Ctrl-C to stop)" not in log.read_text() and time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        shown = log.read_text()
        assert "(Ctrl-C to stop)" in shown, shown[-3000:]
        assert "answer: 12" in shown, shown[-3000:]  # the demo question, asked over HTTP
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    finally:
        stop_server(server, tmp_path, "default")  # SIGINT to the group: the engine core too

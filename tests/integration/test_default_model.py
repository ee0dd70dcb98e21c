"""The serving default, end to end: pulled and checked against its pin, then served as ``make run``
serves it (an embedded engine, its demo question answered over HTTP) and stopped with Ctrl-C.

The rest of the suite runs on the small model for speed, and the live-server test on a shared
`vllm serve`; this is the one place the default runs, and where an embedded engine is stopped by
the signal that reaches its whole process group. The server is started as soon as the tests are
collected (``tests.early``), so its engine's start overlaps the unit tests.
"""

from __future__ import annotations

import httpx
import pytest

from orchestrator.core.model_catalog import CATALOGUE, DEFAULT_MODEL, ensure_model, model_identity, pulled_record
from orchestrator.core.settings import Settings
from tests.integration.test_cli_and_server import stop_server
from tests.servers import CommandServer, wait_for_text

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.subprocess]


def test_make_run_serves_the_default_model_answers_its_demo_question_and_stops_on_ctrl_c(
    default_model_server: CommandServer,
) -> None:
    pulled = ensure_model(Settings().model_cache_dir, DEFAULT_MODEL)  # `make install` pulled it already
    record = pulled_record(pulled)
    assert record is not None and record["gguf_sha256"] == CATALOGUE[DEFAULT_MODEL].sha256
    assert model_identity(str(pulled)) == DEFAULT_MODEL
    server = default_model_server  # `ttc serve --demo-question`, no TTC_MODEL: what a user who sets nothing gets
    assert "TTC_MODEL" not in server.env
    shown = wait_for_text(server, "(Ctrl-C to stop)", 500)
    assert "answer: 12" in shown, shown[-3000:]  # the demo question, asked over HTTP
    assert httpx.get(f"http://127.0.0.1:{server.port}/readyz").status_code == 200
    stop_server(server.process, server.log.parent, "default")  # SIGINT to the group: the engine core too

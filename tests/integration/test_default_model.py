"""The serving default, end to end: pulled and checked against its pin, then answering through ``ttc reason``.

The rest of the suite runs on the small model for speed; this is the one place the default runs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.core.model_catalog import CATALOGUE, DEFAULT_MODEL, ensure_model, model_identity, pulled_record
from orchestrator.core.settings import Settings
from tests.integration.test_cli_and_server import TTC, ttc_env

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.subprocess]


def test_the_default_model_is_pulled_checked_and_answers(tmp_path: Path) -> None:
    pulled = ensure_model(Settings().model_cache_dir, DEFAULT_MODEL)  # `make install` pulled it already
    record = pulled_record(pulled)
    assert record is not None and record["gguf_sha256"] == CATALOGUE[DEFAULT_MODEL].sha256
    assert model_identity(str(pulled)) == DEFAULT_MODEL
    env = ttc_env(tmp_path, TTC_ENGINE__MAX_MODEL_LEN="1024")
    del env["TTC_MODEL"]  # what a user who sets nothing gets
    done = subprocess.run(
        [*TTC, "reason", "What is 7 + 5?", "--max-tokens", "200", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    job = json.loads(done.stdout[done.stdout.index("{") :])
    assert job["status"] == "succeeded" and job["answer"] == "12", job

"""Serve the real API (real embedded Redis) with the scripted backend, for schema fuzzing.

python -m tests.scripted_server --port 8123 --data-dir /tmp/x
"""

from __future__ import annotations

import argparse

import anyio
import uvicorn

from api.app import create_app
from cli.serve import GracefulServer
from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.settings import Settings
from orchestrator.core.store import Store, open_redis
from service.runtime import Runtime
from tests.sessions import VERIFIERS


def answer(prompt: str, sampling) -> list[str]:
    return ["3 + 4 = 7\n\n", "The answer is 7."][: sampling.n] * sampling.n


async def serve(port: int, data_dir: str) -> None:
    settings = Settings(data_dir=data_dir, budget={"max_tokens": 2000, "deadline_s": 10})
    connection = await open_redis(None, settings.data_dir)
    try:
        runtime = Runtime(settings, ScriptedBackend(answer), Store(connection), VERIFIERS)
        config = uvicorn.Config(create_app(settings, runtime), port=port, log_level="warning")
        await GracefulServer(config, runtime).serve()
    finally:
        await connection.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    arguments = parser.parse_args()
    anyio.run(serve, arguments.port, arguments.data_dir)

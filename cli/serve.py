"""``ttc serve``: open the runtime, serve the API over HTTP, optionally ask a demo question."""

from __future__ import annotations

import anyio
import httpx
import typer
import uvicorn

from api.app import create_app
from orchestrator.core.settings import Settings
from service.runtime import Runtime


def run_server(settings: Settings, *, demo_question: str | None = None) -> None:
    """Serve until interrupted. Start-up errors (model, Redis) raise before the port opens."""
    anyio.run(_serve, settings, demo_question)


async def _serve(settings: Settings, demo_question: str | None) -> None:
    async with Runtime.open(settings) as runtime:
        config = uvicorn.Config(create_app(settings, runtime), host=settings.host, port=settings.port, log_level="info")
        server = GracefulServer(config, runtime)
        async with anyio.create_task_group() as group:
            if demo_question:
                group.start_soon(_ask_demo_question, server, settings, demo_question)
            await server.serve()
            group.cancel_scope.cancel()


class GracefulServer(uvicorn.Server):
    """uvicorn that tells the backend the process is stopping as soon as a signal arrives.

    Ctrl-C reaches the whole process group, so the engine core dies of the same signal: the
    backend must not take that for a crash and build a new engine while the server stops.
    """

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime

    def handle_exit(self, sig: int, frame) -> None:
        self.runtime.backend.stopping()
        super().handle_exit(sig, frame)
        # uvicorn would raise the signal again once it has stopped, killing the process before
        # the runtime closes (SIGTERM) — and the embedded Redis it started would outlive it.
        self._captured_signals.clear()


async def _ask_demo_question(server: uvicorn.Server, settings: Settings, question: str) -> None:
    """Show the service answering: one request over HTTP, printed as a person would read it."""
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no start-up event to wait on)
        await anyio.sleep(0.1)
    base = f"http://{settings.host}:{settings.port}"
    async with httpx.AsyncClient(timeout=300) as client:
        response = await client.post(f"{base}/v1/reason", json={"question": question})
    body = response.json()
    typer.secho(f'\n$ curl -X POST {base}/v1/reason -d \'{{"question": "{question}"}}\'', bold=True)
    if response.status_code != 200:
        typer.secho(f"error: {body}", fg=typer.colors.RED)
        return
    typer.secho(f"answer: {body['answer']}", fg=typer.colors.GREEN, bold=True)
    typer.echo(f"output: {(body['output'] or '').strip()}")
    usage = body["usage"]
    typer.echo(
        f"usage: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens, "
        f"{usage['eflops']:.3g} effective FLOPs, {usage['wall_time_s']:.2f} s"
    )
    typer.secho(f"serving on {base} (Ctrl-C to stop)\n", bold=True)

"""``ttc contexts``: sleep-time contexts on a running service, through the SDK.

A context is text questions will be asked about; the service precomputes a memory of checked facts
over it while nobody is asking (``strategies.sleep_time``). ``ttc reason --context ID`` then asks a
question over it.

    ttc contexts create --file shop.txt --wait
    ttc contexts show ctx-...
    ttc contexts extend ctx-... "On Friday it sells 4 more pens." --wait
    ttc contexts delete ctx-...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import ApiKeyOption, JsonOption, RequiredServer, connected, console
from cli.common import fail, run
from orchestrator.core.errors import TTCError

contexts_app = typer.Typer(help="Sleep-time contexts on a running service: create, show, extend, delete.",
                           no_args_is_help=True)  # fmt: skip
ContextIdArgument = Annotated[str, typer.Argument(help="the context's id (create prints it)")]
TextArgument = Annotated[str | None, typer.Argument(help="the text (or --file)")]
FileOption = Annotated[Path | None, typer.Option("--file", help="read the text from this file")]
WaitOption = Annotated[bool, typer.Option("--wait", help="wait until the memory is ready, then show it")]
SleepTokensOption = Annotated[int | None, typer.Option(min=1, help="compute tokens the precompute may spend")]


@contexts_app.command("create")
def contexts_create(
    server: RequiredServer,
    text: TextArgument = None,
    file: FileOption = None,
    params: Annotated[str, typer.Option(help="sleep params as JSON (ttc strategies lists sleep_time's)")] = "{}",
    sleep_tokens: SleepTokensOption = None,
    wait: WaitOption = False,
    api_key: ApiKeyOption = None,
) -> None:
    """Store a context and start precomputing its memory; prints its id."""
    body = _text(text, file)
    try:
        parsed = json.loads(params)
    except json.JSONDecodeError as error:
        fail(TTCError(f"--params must be JSON ({error})"))
    budget = {"max_tokens": sleep_tokens} if sleep_tokens else None

    async def create(client):
        return await client.create_context(body, sleep_budget=budget, params=parsed)

    _show(_on_service(server, api_key, create, wait))


@contexts_app.command("show")
def contexts_show(
    context_id: ContextIdArgument,
    server: RequiredServer,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """A context: status, memory, sleep tokens and questions served."""
    _show(_on_service(server, api_key, lambda client: client.context(context_id)), as_json)


@contexts_app.command("extend")
def contexts_extend(
    context_id: ContextIdArgument,
    server: RequiredServer,
    text: TextArgument = None,
    file: FileOption = None,
    sleep_tokens: SleepTokensOption = None,
    wait: WaitOption = False,
    api_key: ApiKeyOption = None,
) -> None:
    """Append text to a context; its memory is recomputed over what changed."""
    body = _text(text, file)
    budget = {"max_tokens": sleep_tokens} if sleep_tokens else None

    async def extend(client):
        return await client.extend_context(context_id, body, sleep_budget=budget)

    _show(_on_service(server, api_key, extend, wait))


@contexts_app.command("delete")
def contexts_delete(context_id: ContextIdArgument, server: RequiredServer, api_key: ApiKeyOption = None) -> None:
    """Remove a context and its memory (a precompute still running is cancelled)."""
    _on_service(server, api_key, lambda client: client.delete_context(context_id))
    console.print(f"{context_id}: deleted", markup=False)


def _text(text: str | None, file: Path | None) -> str:
    """The text from the argument or the file (exactly one of them)."""
    if (text is None) == (file is None):
        fail(TTCError("give the text as an argument or --file, not both and not neither"))
    if file is None:
        return text or ""
    try:
        return file.read_text()
    except OSError as error:
        fail(TTCError(f"--file: cannot read {file} ({error.strerror})"))


def _on_service(server: str, api_key: str | None, action, wait: bool = False) -> Any:
    """Run ``action(client)`` on the service; with ``wait``, then wait for the context it returns."""

    async def go():
        async with connected(server, api_key) as client:
            result = await action(client)
            return await client.wait_for_context(result.context_id) if wait else result

    return run(go)


def _show(context: Any, as_json: bool = False) -> None:
    if as_json:
        typer.echo(context.model_dump_json(indent=2))
        return
    typer.echo(f"{context.context_id}: {context.status} (memory v{context.memory_version}, "
               f"{context.sleep_tokens} sleep tokens, {context.queries} questions served)")  # fmt: skip
    if context.error:
        typer.echo(f"error: {context.error.get('message', context.error)}")
    if context.memory:
        typer.echo(context.memory)

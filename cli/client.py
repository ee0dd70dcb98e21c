"""The ``ttc`` command as a client of a running service: ``reason --server``, ``jobs``, ``strategies``.

The service is ``--server`` or ``TTC_BASE_URL``, the key ``--api-key`` or ``TTC_API_KEY``
(the SDK reads the same two). Progress is drawn live with rich on standard error: a
spinner with the tokens spent so far over one line per wave, depth or thread event
(``api.progress.describe``); piped into a file it is just the lines. Results go to
standard output.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from api.progress import describe
from cli.common import exit_with, run
from orchestrator.core.errors import TTCError

ServerOption = Annotated[
    str | None,
    typer.Option("--server", envvar="TTC_BASE_URL", help="a running service's URL (else: this process runs it)"),
]
ApiKeyOption = Annotated[str | None, typer.Option("--api-key", envvar="TTC_API_KEY", help="the service's API key")]
RequiredServer = Annotated[
    str, typer.Option("--server", envvar="TTC_BASE_URL", help="the service's URL (or TTC_BASE_URL)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="the whole record as JSON")]
JobIdArgument = Annotated[str, typer.Argument(help="the job's id (ttc jobs list shows them)")]

jobs_app = typer.Typer(help="Jobs on a running service: list, show, watch, cancel.", no_args_is_help=True)
console = Console(highlight=False)
progress = Console(stderr=True, highlight=False)


@asynccontextmanager
async def connected(server: str, api_key: str | None) -> AsyncIterator[Any]:
    """An SDK client for the service (``ttc.AsyncClient``)."""
    from ttc import AsyncClient

    async with AsyncClient(base_url=server, api_key=api_key) as client:
        yield client


async def follow(events: AsyncIterator[dict[str, Any]]) -> None:
    """Draw a job's progress until its result: one line per event, a spinner with the tokens so far."""
    with progress.status("waiting for a worker...") as status:
        async for event in events:
            if (line := describe(event)) is not None:
                progress.print(line.rstrip("\n"), markup=False)
            usage = event.get("usage") or {}
            status.update(f"running: {usage.get('compute_tokens', 0)} tokens so far")


async def reason_remotely(
    server: str,
    api_key: str | None,
    question: str,
    strategy: str,
    budget: Any,
    params: dict[str, Any],
    context_id: str | None = None,
) -> Any:
    """Submit the question (over ``context_id``'s context, if given) to the service, draw its
    progress, and return the finished job."""
    async with connected(server, api_key) as client:
        job = await client.submit(question, budget=budget, strategy=strategy, params=params, context_id=context_id)
        await follow(job.events())
        return await job.result()


@jobs_app.command("list")
def jobs_list(
    server: RequiredServer,
    api_key: ApiKeyOption = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="jobs per page")] = 20,
    before: Annotated[float | None, typer.Option(help="the previous page's next_before")] = None,
) -> None:
    """This key's jobs, newest first."""

    async def go():
        async with connected(server, api_key) as client:
            return await client.jobs(limit, before)

    page = run(go)
    header = ("job", "status", "strategy", "tokens", "created", "answer", "question")
    rows = [
        (
            job.job_id,
            job.status,
            job.strategy,
            str(job.compute_tokens),
            datetime.datetime.fromtimestamp(job.created_at).strftime("%Y-%m-%d %H:%M:%S"),
            job.answer or "",
            " ".join(job.question.split()),
        )
        for job in page.data
    ]
    if console.is_terminal:
        table = Table(*header)
        table.columns[0].no_wrap = True
        for row in rows:
            cells = [*row[:-1], row[-1] if len(row[-1]) <= 40 else row[-1][:39] + "…"]
            table.add_row(*(Text(cell) for cell in cells))  # as text: a question's "[...]" is not markup
        console.print(table)
    else:  # piped: one tab-separated line per job, for scripts
        for row in (header, *rows):
            typer.echo("\t".join(row))
    if page.next_before is not None:  # a hint for a person, not a row for a script
        progress.print(f"more: ttc jobs list --before {page.next_before!r}", markup=False)


@jobs_app.command("show")
def jobs_show(
    job_id: JobIdArgument,
    server: RequiredServer,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """One job: status, answer, usage (and how auto decided)."""
    job = _run_on_job(server, api_key, job_id, lambda job: job.status())
    print_job(job, as_json, require_success=False)


@jobs_app.command("watch")
def jobs_watch(
    job_id: Annotated[str, typer.Argument(help="the job's id")], server: RequiredServer, api_key: ApiKeyOption = None
) -> None:
    """Draw a job's progress live until it ends, then show it."""

    async def watch(job):
        await follow(job.events())
        return await job.status()

    print_job(_run_on_job(server, api_key, job_id, watch), as_json=False)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="the job's id")], server: RequiredServer, api_key: ApiKeyOption = None
) -> None:
    """Cancel a job (a running one stops within a moment)."""
    job = _run_on_job(server, api_key, job_id, lambda job: job.cancel())
    console.print(f"{job.job_id}: {job.status}", markup=False)


def _run_on_job(server: str, api_key: str | None, job_id: str, action: Callable) -> Any:
    async def go():
        async with connected(server, api_key) as client:
            return await action(client.job(job_id))

    return run(go)


def strategies_table(strategies: Iterable[tuple[str, str, dict[str, Any]]]) -> Table:
    """Name, what it does, and its params (name=default) — from the registry or a service."""
    table = Table("strategy", "what it does", "params (default)", show_lines=True)
    for name, description, schema in strategies:
        params = [
            f"{key}={json.dumps(field.get('default'))}" if "default" in field else key
            for key, field in schema.get("properties", {}).items()
        ]
        table.add_row(name, description, ", ".join(params))
    return table


def verifiers_table(verifiers: Iterable[Any]) -> Table:
    """Name, what it reads, and whether the service has it (else what to set); the reward model's card."""
    table = Table("verifier", "what it reads", "available", show_lines=True)
    for verifier in verifiers:
        if verifier.available is None:
            status = "ask a service: --server"
        elif verifier.available:
            status = "yes"
            if verifier.reward_model:
                card = verifier.reward_model
                auroc = (card.get("validation") or {}).get("within_item_auroc")
                status += f": {card['kind']} on {card['base_model']}, judges {card['judged_model']}"
                status += f", held-out within-item AUROC {auroc:.3f}" if auroc is not None else ""
        else:
            status = f"no: {verifier.unavailable_reason}"
        table.add_row(verifier.name, verifier.summary, status)
    return table


def print_job(job: Any, as_json: bool, require_success: bool = True) -> None:
    """A job (a ``JobRecord`` here, a ``ReasonResponse`` from a service): the decision path of
    ``auto``, the answer, the output and the usage. With ``require_success`` (a command that
    waited for the answer) a job that did not succeed fails the command; else its status shows."""
    if as_json:
        typer.echo(job.model_dump_json(indent=2))
        return
    job_id = getattr(job, "job_id", None) or getattr(job, "id", "")
    if job.status != "succeeded":
        message = f"job {job_id} {job.status}" + (f": {job.error['message']}" if job.error else "")
        if require_success:
            exit_with(TTCError(message), code=1)
        typer.echo(message)
    for line in decision_path(job.trace):
        typer.echo(line)
    typer.secho(f"answer: {job.answer}", bold=True)
    typer.echo(f"output: {job.output.strip() if job.output else ''}")
    typer.echo("usage: " + job.usage.model_dump_json(indent=2))


def decision_path(trace: dict) -> list[str]:
    """``auto``'s waves, one readable line each (nothing for other strategies).

    Example: ``wave 1: 4 samples, 2 of 4 say 12 (share 0.50) -> wave: 2 of 4 agree: 4 more``.
    """
    route = trace.get("route") or {}
    lines = []
    for number, wave in enumerate(route.get("waves", []), start=1):
        lines.append(
            f"wave {number}: {wave['size']} samples, {wave['leader_votes']} of {wave['samples']} say "
            f"{wave['leader']} (share {wave['share']:.2f}) -> {wave['action']}: {wave['reason']}"
        )
    if route.get("switched_to"):
        lines.append(f"switched to {route['switched_to']}")
    return lines

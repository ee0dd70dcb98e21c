"""``ttc sweep`` and ``ttc fit-router``: the harness's commands (registered by ``cli``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.common import fail, load_settings, quiet_engine_logs, run
from orchestrator.core.errors import InvalidRequestError, describe_problems


def parse_strategy(text: str) -> dict:
    """``NAME`` or ``NAME:JSON-params``, e.g. ``best_of_n:{"selection": "weighted"}``."""
    name, _, params = text.partition(":")
    try:
        parsed = json.loads(params) if params.strip() else {}
    except json.JSONDecodeError as error:
        raise InvalidRequestError(f"--strategy {text!r}: params after ':' must be JSON ({error.msg})") from None
    return {"strategy": name.strip(), "params": parsed}


def parse_budgets(text: str) -> list[int]:
    """``256,512,1024`` -> ``[256, 512, 1024]``."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidRequestError(f"--budgets {text!r}: give comma-separated integers, e.g. 256,512,1024") from None


def progress_bar(description: str):
    """A live rich bar (done/total, time, ETA) driven by ``on_progress(done, total)``; returns
    (callback, close). Piped into a file, where rich draws no bar, a line every ``LOG_EVERY_S``."""
    if not sys.stderr.isatty():
        return progress_lines(description)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    task = bar.add_task(description, total=None)
    bar.start()

    def on_progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return on_progress, bar.stop


LOG_EVERY_S = 60.0


def progress_lines(description: str):
    """For a log file: ``description: done/total (elapsed, ETA)`` at most once a ``LOG_EVERY_S``, and at the end."""
    started, last = time.monotonic(), [0.0]

    def on_progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < LOG_EVERY_S and done < total:
            return
        last[0], elapsed = now, now - started
        eta = f", ETA {elapsed / done * (total - done):.0f} s" if 0 < done < total else ""
        print(f"{description}: {done}/{total} ({elapsed:.0f} s{eta})", file=sys.stderr, flush=True)

    return on_progress, lambda: None


def sweep(
    name: Annotated[str, typer.Option(help="names the sweep's results in Redis; rerun with it to resume")],
    strategy: Annotated[
        list[str] | None,
        typer.Option(help='NAME or NAME:JSON params, repeatable, e.g. best_of_n:{"selection":"weighted"}'),
    ] = None,
    dataset: Annotated[
        str,
        typer.Option(help="arithmetic, countdown, multi_query, gsm8k, math500, aime, gym:<family> or a .jsonl file"),
    ] = "arithmetic",
    split: Annotated[str, typer.Option(help="dev, test or all")] = "dev",
    limit: Annotated[int, typer.Option(help="items")] = 20,
    data_seed: Annotated[int, typer.Option(help="seed of generated datasets")] = 0,
    budgets: Annotated[str, typer.Option(help="compute-token budgets, powers of two")] = "256,512,1024,2048",
    seeds: Annotated[int, typer.Option(help="repeats of every point")] = 1,
    concurrency: Annotated[int, typer.Option(help="attempts, passes and probes in flight at most")] = 64,
    streams: Annotated[
        int, typer.Option(help="sequences in flight at once (n, width x samples, ...): keeps the engine's batch full")
    ] = 128,
    server: Annotated[str | None, typer.Option(help="run through the SDK against this ttc service URL")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="TTC_API_KEY", help="API key for --server")] = None,
    out: Annotated[Path | None, typer.Option(help="output directory (default runs/NAME)")] = None,
) -> None:
    """Sweep strategies x budgets over a dataset: JSONL, summary table, plots, report."""
    from harness.run import run_sweep
    from harness.sweep import SweepSpec

    def build() -> SweepSpec:
        return SweepSpec(
            name=name,
            dataset=dataset,
            split=split,
            limit=limit,
            data_seed=data_seed,
            strategies=[parse_strategy(s) for s in strategy or ["direct", "best_of_n"]],
            budgets=parse_budgets(budgets),
            seeds=seeds,
            concurrency=concurrency,
            streams=streams,
        )

    spec = _validated(build)
    out_dir = out or Path("runs") / name

    async def go():
        on_progress, close = progress_bar(f"sweep {name}")
        try:
            return await run_sweep(spec, out_dir, _settings(), server=server, api_key=api_key, on_progress=on_progress)
        finally:
            close()

    outcome = _run(go)
    typer.echo(f"{len(outcome.results)} points in {outcome.seconds:.0f} s")
    if outcome.failures:
        typer.secho(
            f"{len(outcome.failures)} runs failed and were not stored (rerun to retry); first: {outcome.failures[0]}",
            fg=typer.colors.YELLOW,
            err=True,
        )
    typer.echo(f"results: {outcome.jsonl}\nreport:  {outcome.report}")


def fit_router(
    name: Annotated[str, typer.Argument(help="the dev sweep to fit from")],
    out: Annotated[Path, typer.Option(help="the policy file to write")] = Path("policies/fitted.json"),
    evaluate: Annotated[bool, typer.Option(help="then compare auto with best-of-N on the test split")] = True,
    eval_limit: Annotated[int | None, typer.Option(help="test items (default: as many as the sweep)")] = None,
    server: Annotated[str | None, typer.Option(help="evaluate through the SDK against this service URL")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="TTC_API_KEY", help="API key for --server")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="evaluation report directory")] = None,
    cost: Annotated[
        str, typer.Option(help="what a rule saves is counted in: tokens, or eflops (Kinetics: KV reads count)")
    ] = "tokens",
    pool: Annotated[
        list[str] | None,
        typer.Option(help="another dev sweep to pool with (repeatable): a mixed stream of its questions and these"),
    ] = None,
    classes: Annotated[bool, typer.Option(help="short and long questions may get rules of their own")] = False,
    verifier: Annotated[
        str | None,
        typer.Option(help="score the stored samples again with this verifier (arith_checked), as auto will"),
    ] = None,
    scores: Annotated[
        list[Path] | None,
        typer.Option(help="stored scores of a served verifier (benchmarks/sweep_reward_scores.py), repeatable"),
    ] = None,
) -> None:
    """Fit auto's policy by replaying a dev sweep's best-of-N samples; evaluate it on the test split."""
    if cost not in ("tokens", "eflops"):
        fail(InvalidRequestError(f"--cost must be tokens or eflops, not {cost!r}"))
    from harness.run import fit_router as fit

    try:
        table = _score_table(scores, verifier) if scores else None
    except InvalidRequestError as error:
        fail(error)

    async def go():
        on_progress, close = progress_bar(f"evaluate {name}")
        try:
            return await fit(
                name,
                out,
                _settings(),
                evaluate=evaluate,
                eval_limit=eval_limit,
                out_dir=report_dir,
                server=server,
                api_key=api_key,
                on_progress=on_progress,
                cost=cost,
                pooled_with=pool or [],
                classes=classes,
                verifier=verifier,
                scores=table,
            )
        finally:
            close()

    outcome = _run(go)
    typer.echo(f"policy: {outcome.policy_path} (version {outcome.policy.version})")
    typer.echo(f"use it: TTC_ROUTING_POLICY={outcome.policy_path.resolve()} ttc serve")
    for budget, rule in (outcome.policy.fitted or {}).get("budgets", {}).items():
        folds = rule["held_out_folds"]
        auto_eflops, majority_eflops = ("", "")
        if cost == "eflops":
            auto_eflops, majority_eflops = f" ({folds['auto_eflops']:.3g} eFLOPs)", f" ({folds['majority_eflops']:.3g})"
        typer.echo(
            f"budget {budget}: dev held-out folds: auto {folds['auto_accuracy']:.3f} @ {folds['auto_tokens']:.0f} "
            f"tokens{auto_eflops}, majority {folds['majority_accuracy']:.3f} @ {folds['majority_tokens']:.0f}"
            f"{majority_eflops}"
        )
    for budget, row in (outcome.evaluation or {}).get("budgets", {}).items():
        low, high = row["efficiency_ci"]
        typer.echo(
            f"budget {budget} (test): auto {row['auto']['accuracy']:.3f} @ {row['auto']['tokens']:.0f} tokens, "
            f"majority {row['majority']['accuracy']:.3f} @ {row['majority']['tokens']:.0f}; efficiency "
            f"{row['efficiency_ratio']:.2f}x ({low:.2f}-{high:.2f}, {row['efficiency_note']})"
        )
    if outcome.report:
        typer.echo(f"report: {outcome.report}")


def sweep_dump(
    name: Annotated[str, typer.Argument(help="the sweep's name")],
    path: Annotated[Path, typer.Argument(help="the file to write (gzipped JSON)")],
) -> None:
    """Write a sweep's stored points (spec, probes, passes, results) to a file, e.g. to resume elsewhere."""
    from harness.run import dump_sweep

    count = _run(lambda: dump_sweep(name, path, _settings()))
    typer.echo(f"{count} stored points of {name} written to {path}")


def sweep_load(path: Annotated[Path, typer.Argument(help="a file `ttc sweep-dump` wrote")]) -> None:
    """Store a dumped sweep's points under its name (points already stored are kept); rerun it to resume."""
    from harness.run import load_sweep_dump

    name, added = _run(lambda: load_sweep_dump(path, _settings()))
    typer.echo(f"{added} points of {name} added from {path}")


def _settings():
    quiet_engine_logs()
    return load_settings()


def _validated(build):
    from pydantic import ValidationError

    try:
        return build()
    except (ValidationError, InvalidRequestError) as error:
        fail(InvalidRequestError(_readable(error)))


def _readable(error: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return describe_problems(error.errors(), "sweep")
    return str(error)


def _run(go):
    try:
        return run(go)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished points are stored; rerun the same command to resume")
        raise typer.Exit(130) from None


def _score_table(paths: list[Path], verifier: str | None) -> dict[str, float]:
    """The scores the files hold (``{"verifier", "scores": {sample key: score}}``), all of ``verifier``."""
    table: dict[str, float] = {}
    for path in paths:
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise InvalidRequestError(f"--scores {path}: not a scores file ({error})") from None
        if stored.get("verifier") != verifier:
            raise InvalidRequestError(
                f"--scores {path} holds {stored.get('verifier')!r} scores; --verifier is {verifier!r}"
            )
        table |= stored["scores"]
    return table


def train_verifier(
    name: Annotated[str | None, typer.Argument(help="the dev sweep whose best-of-N samples to learn from")] = None,
    samples: Annotated[
        list[Path] | None, typer.Option(help="signal-sample files of dev items (benchmarks/signal_samples.py)")
    ] = None,
    out: Annotated[Path, typer.Option(help="the verifier file to write")] = Path("learned-verifier.joblib"),
) -> None:
    """Train the `learned` verifier from labelled dev samples; serve it with TTC_LEARNED_VERIFIER."""
    from harness.learned import from_signal_samples, from_sweep_passes, save, train
    from harness.run import load_sweep_passes

    if (name is None) == (not samples):
        fail(InvalidRequestError("name a dev sweep, or give --samples files, not both"))
    from harness.run import served_name

    judged = served_name(_settings())  # the model whose samples these are
    if name is not None:
        spec, passes = _run(lambda: load_sweep_passes(name, _settings()))
        rows, source = from_sweep_passes(spec, passes), f"sweep {name}"
        judged = spec.get("model") or judged
    else:
        try:
            rows, source = from_signal_samples(samples or []), ", ".join(str(p) for p in samples or [])
        except InvalidRequestError as error:
            fail(error)
    typer.echo(f"training on {len(rows)} samples of {len({r.item_id for r in rows})} dev items ...")
    try:
        artifact = train(rows, source, judged)
    except InvalidRequestError as error:
        fail(error)
    path = save(artifact, out.resolve())
    meta = artifact["meta"]
    aurocs = ", ".join(f"{model} {auroc:.3f}" for model, auroc in meta["validation_auroc"].items())
    typer.echo(f"held-out AUROC: {aurocs}; kept {meta['model']}")
    typer.echo(f"verifier: {path}\nuse it: TTC_LEARNED_VERIFIER={path} ttc serve")


class PhaseBars:
    """One progress bar per phase of a long job, each closed when the next phase starts."""

    def __init__(self) -> None:
        self.phase, self.bar = "", None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            self.close()
            self.phase, self.bar = phase, progress_bar(phase)
        self.bar[0](done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar[1]()
            self.bar = None


def train_reward_model(
    samples: Annotated[
        list[Path], typer.Option(help="signal-sample files of dev items (benchmarks/signal_samples.py)")
    ],
    out: Annotated[Path, typer.Option(help="the model directory to write (rerun with it to resume)")],
    kind: Annotated[str, typer.Option(help="orm: P(right | solution); prm: P(ends right | steps so far)")] = "orm",
    base: Annotated[str, typer.Option(help="a catalogue model name or a model directory")] = "smollm2-135m",
    per_item: Annotated[int | None, typer.Option(help="samples per item, right and wrong in turn")] = None,
    items_limit: Annotated[
        int | None, typer.Option("--items", min=1, help="only the first N items (after --fold): sizes the prm rollouts")
    ] = None,
    trainable_layers: Annotated[int, typer.Option(help="top decoder layers trained; the rest frozen")] = 2,
    epochs: int = 3,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    max_tokens: int = 768,
    seed: int = 0,
    rollouts: Annotated[int, typer.Option(help="prm: rollouts from each step's prefix")] = 4,
    rollout_tokens: Annotated[int, typer.Option(help="prm: tokens per rollout")] = 256,
    label: Annotated[str, typer.Option(help="prm: soft (share of rollouts right) or hard (any right)")] = "soft",
    fold: Annotated[
        str | None,
        typer.Option(help="K/N: leave out fold K of N of the items (by content), to score them out of sample"),
    ] = None,
) -> None:
    """Fine-tune a small causal LM into a reward model of this model's samples; serve it with TTC_REWARD__MODEL.

    An orm learns from the samples' outcomes; a prm from Math-Shepherd step labels, made first by
    finishing each step's prefix ``--rollouts`` times with the served model (resumable too)."""
    from harness.reward_data import outcome_examples, outside_fold, parse_fold, read_signal_items
    from harness.reward_rollouts import label_items
    from harness.reward_training import Trainer, TrainingConfig
    from harness.run import served_name

    if kind not in ("orm", "prm") or label not in ("soft", "hard"):
        fail(InvalidRequestError(f"--kind {kind!r} --label {label!r}: the kind is orm or prm, the label soft or hard"))
    settings, bars = _settings(), PhaseBars()
    try:
        items = read_signal_items(samples)
        if fold is not None:
            items = outside_fold(items, *parse_fold(fold))
        items = items[:items_limit]
        base_dir = _reward_base(base, settings)
        source = {"samples": [str(path) for path in samples], "base_model": base, "judged_model": served_name(settings)}
        source["held_out_fold"] = fold
        if kind == "orm":
            examples = outcome_examples(items, per_item)
        else:
            out.mkdir(parents=True, exist_ok=True)
            typer.echo(f"labelling steps: {rollouts} rollouts of up to {rollout_tokens} tokens from each prefix ...")
            examples, decoded = _run(
                lambda: label_items(
                    settings, items, out / "step-labels.jsonl", samples=per_item or 4, rollouts=rollouts,
                    max_tokens=rollout_tokens, label=label, on_progress=lambda d, t: bars("rollouts (items)", d, t),
                )
            )  # fmt: skip
            source |= {"rollouts": rollouts, "rollout_tokens": rollout_tokens, "label": label, "decoded": decoded}
        config = TrainingConfig(kind=kind, trainable_layers=trainable_layers, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, max_tokens=max_tokens, seed=seed)  # fmt: skip
        typer.echo(f"training the {kind.upper()} on {len(examples)} samples of {len(items)} dev items, base {base} ...")
        meta = Trainer(base_dir, out.resolve(), config, bars).train(examples, source)
    except InvalidRequestError as error:
        fail(error)
    finally:
        bars.close()
    for row in meta["history"]:
        typer.echo(
            f"epoch {row['epoch']}: loss {row['train_loss']:.3f}, held-out AUROC pooled "
            f"{row.get('pooled_auroc')}, within items {row.get('within_item_auroc')}"
        )
    typer.echo(f"reward model: {out.resolve()} ({meta['train_seconds']:.0f} s)")
    typer.echo(f"use it: TTC_REWARD__MODEL={out.resolve()} ttc serve")


def _reward_base(base: str, settings) -> Path:
    """The base model's directory: a catalogue model (pulled if missing) or a directory."""
    from orchestrator.core.model_catalog import CATALOGUE, ensure_model

    directory = ensure_model(settings.model_cache_dir, base) if base in CATALOGUE else Path(base)
    if not (directory / "config.json").is_file():
        raise InvalidRequestError(
            f"--base {base!r} is neither a catalogue name ({', '.join(CATALOGUE)}) nor a model directory"
        )
    return directory

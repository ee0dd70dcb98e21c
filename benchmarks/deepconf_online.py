"""DeepConf online, run for real, against majority@16 on the same questions' stored samples.

A committed sweep dump holds 16 samples per test item, drawn in one pass: majority@16 is their
vote, and its tokens are what they cost. Here ``best_of_n`` with ``online_keep`` (DeepConf online,
``strategies.deepconf``: a warm-up wave of 4 sets the confidence bar, later traces are aborted in
the engine once a 16-token window falls below it, sampling stops at a 95% confidence-weighted
consensus, the surviving traces vote weighted by confidence) draws fresh samples on the same
items, sampled the same way (temperature, length, top-5 logprobs, system prompt), at most 16.

Reported: both accuracies with a paired 95% interval of the difference (by item), both mean
compute tokens, and DeepConf's share of majority@16's tokens with a 95% bootstrap interval over
items. Resumable (JSON lines): a rerun skips items already run.

    .venv/bin/python benchmarks/deepconf_online.py docs/sweep/gsm8k/test/sweep.json.gz --items 100 --keep 0.9
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import anyio
import numpy as np
from embedded import Engine, append_each, embedded_engine, stored_ids  # benchmarks/ is the script's directory

from harness.catalog import load_dataset
from harness.datasets import Problem
from harness.efficiency import paired_difference
from harness.grading import is_correct
from harness.replay import best_of_n, stored_items
from harness.run import read_sweep_dump
from orchestrator.core.budget import Budget
from strategies import get_strategy

RESULTS = Path(__file__).parent / "results"
SAMPLES = 16


async def attempt(engine: Engine, problem: Problem, params: dict) -> dict:
    """One DeepConf online run: right or not, compute tokens, traces drawn and cut."""
    strategy = get_strategy("best_of_n")
    session = engine.session(Budget())
    result = await strategy.run(problem.question, session, strategy.parse_params(params))
    return {
        "id": problem.id,
        "correct": float(is_correct(problem, result.answer, result.output)),
        "tokens": float(session.meter.snapshot().compute_tokens),
        "samples": result.trace["samples_drawn"],
        "answer": result.answer,
    }


def token_share(ours: list[float], theirs: list[float], draws: int = 2000) -> dict:
    """Mean of ``ours`` over mean of ``theirs`` (paired by item), with a 95% bootstrap interval."""
    ours_a, theirs_a = np.array(ours), np.array(theirs)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(ours), (draws, len(ours)))
    ratios = ours_a[picks].mean(axis=1) / theirs_a[picks].mean(axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {"share": float(ours_a.mean() / theirs_a.mean()), "ci95": [float(low), float(high)]}


async def main(args: argparse.Namespace) -> dict:
    stored = read_sweep_dump(args.dump)
    spec = stored["spec"]
    if spec["split"] != "test":
        raise SystemExit(f"{args.dump} is a {spec['split']} sweep: measure on a test sweep")
    problems = load_dataset(spec["dataset"], "test", spec["limit"], spec["data_seed"])[: args.items]
    items = {item.id: item for item in stored_items(problems, stored["passes"])}
    [pass_config] = [s for s in spec["strategies"] if s["strategy"] == "best_of_n"]
    params = {
        "n": SAMPLES,
        "max_tokens": pass_config["params"].get("max_tokens", 256),
        "online_keep": args.keep,
        "consensus": 0.95,
        "wave_size": 4,
        "logprobs": 5,
        "selection": "weighted",
        "verifier": "confidence",
    }
    slug = f"{spec['dataset'].replace(':', '_')}-keep{args.keep}"
    out = RESULTS / f"deepconf_online-{slug}.jsonl"
    done = stored_ids(out)
    todo = [p for p in problems if p.id not in done and p.id in items]
    print(f"{len(done)} items stored, {len(todo)} to run", flush=True)
    if todo:
        async with embedded_engine() as engine:
            await append_each(todo, lambda problem: attempt(engine, problem, params), out, args.concurrency)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    majority = [best_of_n(items[row["id"]], SAMPLES) for row in rows]
    report = {
        "command": "python benchmarks/deepconf_online.py " + " ".join(sys.argv[1:]),
        "sweep": stored["sweep"],
        "items": len(rows),
        "params": params,
        "deepconf_online": {
            "accuracy": float(np.mean([row["correct"] for row in rows])),
            "tokens": float(np.mean([row["tokens"] for row in rows])),
            "samples": float(np.mean([row["samples"] for row in rows])),
        },
        "majority_at_16": {
            "accuracy": float(np.mean([o.correct for o in majority])),
            "tokens": float(np.mean([o.tokens for o in majority])),
        },
        "accuracy_minus_majority_16": paired_difference([o.correct for o in majority], [r["correct"] for r in rows]),
        "token_share_of_majority_16": token_share([r["tokens"] for r in rows], [o.tokens for o in majority]),
    }
    (RESULTS / f"deepconf_online-{slug}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path, help="a test sweep's dump (ttc sweep-dump), 16 samples per item")
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--keep", type=float, default=0.9, help="0.9: DeepConf-high (cautious); 0.1: -low")
    parser.add_argument("--concurrency", type=int, default=8)
    anyio.run(main, parser.parse_args())

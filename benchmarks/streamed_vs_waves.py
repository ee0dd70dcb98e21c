"""Deciding as each sample finishes against deciding after each wave: wall time, tokens, accuracy.

A wave waits for its slowest sample before the stop rule looks at it; the streamed stop
(``best_of_n`` with ``streamed``, ``strategies.streamed``) keeps ``in_flight`` samples decoding,
judges each the moment it ends, and aborts the rest in the engine once the rule fires. Both arms
here use the same stop rule (the Dirichlet test of Adaptive-Consistency) on the same questions,
one question at a time so each one's wall time is its own, in alternating order. A third arm
samples until the calculator checks one (``accept_score`` with ``arith_checked``, giving up after
eight). Paired by item, with 95% bootstrap intervals on the differences; resumable (JSON lines).

    .venv/bin/python benchmarks/streamed_vs_waves.py --items 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import anyio
from embedded import Engine, embedded_engine, stored_ids  # benchmarks/ is the script's directory

from harness.catalog import load_dataset
from harness.datasets import Problem
from harness.efficiency import paired_difference
from harness.grading import is_correct
from orchestrator.core.budget import Budget
from strategies import get_strategy

RESULTS = Path(__file__).parent / "results"
STOP = {"n": 16, "max_tokens": 256, "stop_rule": "adaptive_consistency", "stop_confidence": 0.95}
ARMS = {
    "waves_of_4": {**STOP, "wave_size": 4},
    "streamed_4_in_flight": {**STOP, "wave_size": 4, "streamed": True, "in_flight": 4},
    "streamed_until_checked": {
        **STOP,
        "streamed": True,
        "in_flight": 4,
        "verifier": "arith_checked",
        "accept_score": 0.9,
        "give_up_after": 8,
    },
}


async def attempt(engine: Engine, problem: Problem, params: dict) -> dict:
    """One run of best-of-N with ``params``: right or not, compute tokens, samples, wall seconds."""
    strategy = get_strategy("best_of_n")
    session = engine.session(Budget(max_tokens=16 * 256 + 2048))
    started = time.monotonic()
    result = await strategy.run(problem.question, session, strategy.parse_params(params))
    usage = session.meter.snapshot()
    return {
        "correct": float(is_correct(problem, result.answer, result.output)),
        "tokens": float(usage.compute_tokens),
        "samples": float(result.trace["samples_drawn"]),
        "seconds": time.monotonic() - started,
    }


def summary(rows: list[dict], arm: str, baseline: str = "waves_of_4") -> dict:
    """The arm's means, and (arm - waves) per measure with a paired 95% interval."""
    found = {}
    for measure in ("correct", "tokens", "samples", "seconds"):
        ours, theirs = [row[arm][measure] for row in rows], [row[baseline][measure] for row in rows]
        found[measure] = {"mean": statistics.fmean(ours), f"minus_{baseline}": paired_difference(theirs, ours)}
    return found


async def main(args: argparse.Namespace) -> dict:
    problems = load_dataset(args.dataset, "test", args.items, 0)
    out = RESULTS / f"streamed_vs_waves-{args.dataset}.jsonl"
    done = stored_ids(out)
    async with embedded_engine() as engine:
        for index, problem in enumerate(problems):
            if problem.id in done:
                continue
            order = list(ARMS) if index % 2 == 0 else list(reversed(ARMS))
            row = {"id": problem.id, **{arm: await attempt(engine, problem, ARMS[arm]) for arm in order}}
            with out.open("a") as file:
                file.write(json.dumps(row) + "\n")
            if (index + 1) % 10 == 0:
                print(f"  {index + 1}/{len(problems)}", flush=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    report = {
        "command": f"python benchmarks/streamed_vs_waves.py --items {args.items} --dataset {args.dataset}",
        "items": len(rows),
        "arms": ARMS,
        **{arm: summary(rows, arm) for arm in ARMS},
    }
    (RESULTS / f"streamed_vs_waves-{args.dataset}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--dataset", default="arithmetic")
    anyio.run(main, parser.parse_args())

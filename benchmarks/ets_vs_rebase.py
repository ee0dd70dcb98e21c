"""ETS vs REBASE at equal width on one dataset's test questions (graded arithmetic by default), in one run.

For every question both searches run on the same engine (order alternating per question)
with the calculator verifier. Reported per method: accuracy, KV footprint (tokens of unique
live-path nodes summed over depths), completion and compute tokens, wall time; and the
ratios the ETS paper reports (KV 1.8x smaller, throughput 1.4x higher, <= 1 point accuracy loss).

Resumable: each batch's rows land in ``results/<name>.jsonl`` once both methods ran it, and a rerun
with the same settings skips those questions.

    .venv/bin/python benchmarks/ets_vs_rebase.py [--dataset gsm8k] [--questions 14] [--width 8] [--seed 0]
        [--verifier confidence_mean --logprobs 5]   # a token-confidence step scorer instead of the calculator
        [--verifier learned]                        # the learned verifier (TTC_LEARNED_VERIFIER names its file)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import anyio

RESULTS_DIR = Path(__file__).parent / "results"


def results_stem(args: argparse.Namespace) -> str:
    """The file name (without extension) of one configuration's rows and report."""
    return (
        "ets_vs_rebase"
        + ("" if args.dataset == "arithmetic" else f"-{args.dataset}")
        + ("" if args.verifier == "arith_steps" else f"-{args.verifier}")
        + f"-w{args.width}"
        + ("" if (args.max_steps, args.step_tokens) == (4, 64) else f"-s{args.max_steps}x{args.step_tokens}")
    )


async def main(args: argparse.Namespace) -> dict:
    from embedded import embedded_engine, stored_ids

    from harness.catalog import load_dataset
    from orchestrator.core.budget import Budget
    from strategies import get_strategy
    from verifiers.outcome import answers_match

    problems = load_dataset(args.dataset, "test", args.questions, args.seed)  # never the dev items tuned on
    params = {"width": args.width, "max_steps": args.max_steps, "step_max_tokens": args.step_tokens}
    params |= {"verifier": args.verifier, "logprobs": args.logprobs}
    rows_file = RESULTS_DIR / f"{results_stem(args)}.jsonl"  # one line per question: both methods' rows
    done = stored_ids(rows_file)
    todo = [problem for problem in problems if problem.id not in done]
    print(f"{len(done)} questions already run, {len(todo)} to run", flush=True)
    async with embedded_engine() as engine:

        async def solve(name: str, problem, batch_rows: dict[str, dict]) -> None:
            strategy = get_strategy(name)
            session = engine.session(Budget(deadline_s=600))
            result = await strategy.run(problem.question, session, strategy.parse_params(params))
            usage = session.meter.snapshot()
            batch_rows[problem.id] = {
                "id": problem.id,
                "correct": answers_match(result.answer, problem.answer),
                "answer": result.answer,
                "gold": problem.answer,
                "kv_footprint_tokens": usage.kv_footprint_tokens,
                "completion_tokens": usage.completion_tokens,
                "compute_tokens": usage.compute_tokens,
                "pruned": sum(result.trace.get("pruned_per_depth", [])),
            }

        batches = [todo[i : i + args.batch] for i in range(0, len(todo), args.batch)]
        for index, batch in enumerate(batches):
            # A batch of questions runs at once under one method, then under the other (order
            # alternating): both see the same load, and the engine's batch stays full.
            by_method: dict[str, dict[str, dict]] = {}
            for name in ["rebase", "ets"] if index % 2 == 0 else ["ets", "rebase"]:
                batch_rows: dict[str, dict] = {}
                started = time.perf_counter()
                async with anyio.create_task_group() as group:
                    for problem in batch:
                        group.start_soon(solve, name, problem, batch_rows)
                seconds = time.perf_counter() - started
                for row in batch_rows.values():
                    row["seconds"] = seconds / len(batch)  # the batch's wall time, shared by its questions
                by_method[name] = batch_rows
                right = sum(row["correct"] for row in batch_rows.values())
                print(
                    f"[batch {index + 1}/{len(batches)}] {name:>6}: {right}/{len(batch)} right, {seconds:.1f}s",
                    flush=True,
                )
            with rows_file.open("a") as file:  # a batch lands only when both methods ran it
                for problem in batch:
                    line = {"id": problem.id, **{name: found[problem.id] for name, found in by_method.items()}}
                    file.write(json.dumps(line) + "\n")
    wanted = {problem.id for problem in problems}
    lines = [json.loads(line) for line in rows_file.read_text().splitlines()]
    rows = {name: [line[name] for line in lines if line["id"] in wanted] for name in ("rebase", "ets")}
    summary = {name: _summarise(method_rows) for name, method_rows in rows.items()}
    return {
        "benchmark": "ets_vs_rebase",
        "command": "python benchmarks/ets_vs_rebase.py " + " ".join(sys.argv[1:]),
        "params": params,
        "dataset": args.dataset,
        "questions": len(rows["ets"]),
        "seed": args.seed,
        "summary": summary,
        "kv_ratio_rebase_over_ets": summary["rebase"]["kv_footprint_tokens"]
        / max(summary["ets"]["kv_footprint_tokens"], 1),
        "throughput_ratio_ets_over_rebase": summary["rebase"]["seconds"] / max(summary["ets"]["seconds"], 1e-9),
        "accuracy_difference_ets_minus_rebase": summary["ets"]["accuracy"] - summary["rebase"]["accuracy"],
        "accuracy_difference_ci95": _paired_interval(rows["rebase"], rows["ets"]),
        "rows": rows,
    }


def _paired_interval(rebase: list[dict], ets: list[dict], draws: int = 4000) -> list[float]:
    """A 95% bootstrap interval of ETS's accuracy minus REBASE's, resampling questions (paired)."""
    import random

    by_id = {row["id"]: row["correct"] for row in rebase}
    pairs = [(row["correct"], by_id[row["id"]]) for row in ets]
    rng, differences = random.Random(0), []
    for _ in range(draws):
        picked = [pairs[rng.randrange(len(pairs))] for _ in pairs]
        differences.append(sum(e - r for e, r in picked) / len(picked))
    differences.sort()
    return [differences[int(0.025 * draws)], differences[int(0.975 * draws)]]


def _summarise(rows: list[dict]) -> dict:
    return {
        "accuracy": sum(r["correct"] for r in rows) / len(rows),
        "kv_footprint_tokens": statistics.mean(r["kv_footprint_tokens"] for r in rows),
        "completion_tokens": statistics.mean(r["completion_tokens"] for r in rows),
        "compute_tokens": statistics.mean(r["compute_tokens"] for r in rows),
        "seconds": statistics.mean(r["seconds"] for r in rows),
        "pruned": statistics.mean(r["pruned"] for r in rows),
    }


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="arithmetic", help="any dataset name (its test split), e.g. gsm8k")
    parser.add_argument("--questions", type=int, default=14)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--step-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=4, help="questions run at once (per method)")
    parser.add_argument("--verifier", default="arith_steps", help="the step scorer, e.g. confidence_mean, learned")
    parser.add_argument("--logprobs", type=int, default=0, help="top-k logprobs per token (5 for token signals)")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    arguments = parser.parse_args()
    RESULTS_DIR.mkdir(exist_ok=True)
    report = anyio.run(main, arguments)
    out = RESULTS_DIR / f"{results_stem(arguments)}.json"
    out.write_text(json.dumps(report, indent=2))
    keys = (
        "summary",
        "kv_ratio_rebase_over_ets",
        "throughput_ratio_ets_over_rebase",
        "accuracy_difference_ets_minus_rebase",
        "accuracy_difference_ci95",
    )
    print(json.dumps({k: report[k] for k in keys}, indent=2))
    print(f"saved {out}")

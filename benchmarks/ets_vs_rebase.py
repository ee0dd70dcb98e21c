"""ETS vs REBASE at equal width on graded arithmetic (one operation to two-step word problems), in one run.

For every question both searches run on the same engine (order alternating per question)
with the calculator verifier. Reported per method: accuracy, KV footprint (tokens of unique
live-path nodes summed over depths), completion and compute tokens, wall time; and the
ratios the ETS paper reports (KV 1.8x smaller, throughput 1.4x higher, <= 1 point accuracy loss).

    .venv/bin/python benchmarks/ets_vs_rebase.py [--questions 14] [--width 8] [--seed 0]
        [--verifier confidence_mean --logprobs 5]   # a token-confidence step scorer instead of the calculator
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import anyio

RESULTS_DIR = Path(__file__).parent / "results"


async def main(args: argparse.Namespace) -> dict:
    from embedded import embedded_engine

    from harness.datasets import graded_arithmetic
    from orchestrator.core.budget import Budget
    from strategies import get_strategy
    from verifiers.outcome import answers_match

    problems = graded_arithmetic(args.questions, args.seed)
    params = {"width": args.width, "max_steps": args.max_steps, "step_max_tokens": args.step_tokens}
    params |= {"verifier": args.verifier, "logprobs": args.logprobs}
    rows: dict[str, list[dict]] = {"rebase": [], "ets": []}
    async with embedded_engine() as engine:
        for index, problem in enumerate(problems):
            order = ["rebase", "ets"] if index % 2 == 0 else ["ets", "rebase"]
            for name in order:
                strategy = get_strategy(name)
                session = engine.session(Budget(deadline_s=600))
                started = time.perf_counter()
                result = await strategy.run(problem.question, session, strategy.parse_params(params))
                seconds = time.perf_counter() - started
                usage = session.meter.snapshot()
                rows[name].append(
                    {
                        "correct": answers_match(result.answer, problem.answer),
                        "answer": result.answer,
                        "gold": problem.answer,
                        "kv_footprint_tokens": usage.kv_footprint_tokens,
                        "completion_tokens": usage.completion_tokens,
                        "compute_tokens": usage.compute_tokens,
                        "seconds": seconds,
                        "pruned": sum(result.trace.get("pruned_per_depth", [])),
                    }
                )
                print(
                    f"[{index + 1}/{len(problems)}] {name:>6}: answer={result.answer} gold={problem.answer} "
                    f"kv={usage.kv_footprint_tokens} tokens={usage.completion_tokens} {seconds:.1f}s"
                )
    summary = {name: _summarise(method_rows) for name, method_rows in rows.items()}
    return {
        "benchmark": "ets_vs_rebase",
        "params": params,
        "questions": len(problems),
        "seed": args.seed,
        "summary": summary,
        "kv_ratio_rebase_over_ets": summary["rebase"]["kv_footprint_tokens"]
        / max(summary["ets"]["kv_footprint_tokens"], 1),
        "throughput_ratio_ets_over_rebase": summary["rebase"]["seconds"] / max(summary["ets"]["seconds"], 1e-9),
        "accuracy_difference_ets_minus_rebase": summary["ets"]["accuracy"] - summary["rebase"]["accuracy"],
        "rows": rows,
    }


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
    parser.add_argument("--questions", type=int, default=14)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--step-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verifier", default="arith_steps", help="the step scorer, e.g. confidence_mean, learned")
    parser.add_argument("--logprobs", type=int, default=0, help="top-k logprobs per token (5 for token signals)")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    arguments = parser.parse_args()
    report = anyio.run(main, arguments)
    RESULTS_DIR.mkdir(exist_ok=True)
    suffix = "" if arguments.verifier == "arith_steps" else f"-{arguments.verifier}"
    out = RESULTS_DIR / f"ets_vs_rebase{suffix}.json"
    out.write_text(json.dumps(report, indent=2))
    keys = (
        "summary",
        "kv_ratio_rebase_over_ets",
        "throughput_ratio_ets_over_rebase",
        "accuracy_difference_ets_minus_rebase",
    )
    print(json.dumps({k: report[k] for k in keys}, indent=2))
    print(f"saved {out}")

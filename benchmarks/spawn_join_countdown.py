"""spawn/join on Countdown: the same child threads run concurrently vs one after another.

Both modes use the Countdown split (one child per first operation, greedy decoding), so
they do the same work and spend the same tokens; the ratio is wall time. For reference,
one long chain (``direct``) gets as many completion tokens as spawn/join used on average.
Order alternates per question so drift on this shared machine hits both modes alike.

    .venv/bin/python benchmarks/spawn_join_countdown.py [--questions 12] [--children 4]
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
    from harness.datasets import countdown
    from harness.grading import is_correct
    from orchestrator.backends.inprocess import EngineOptions, InProcessBackend
    from orchestrator.budget import Budget, BudgetMeter
    from orchestrator.context import ReasoningContext
    from orchestrator.embedded_model import ensure_embedded_model
    from orchestrator.settings import Settings
    from strategies import get_strategy

    model = ensure_embedded_model(Settings().model_cache_dir)
    backend = await InProcessBackend.start(str(model), EngineOptions(cpu_kv_cache_space_gib=2))
    problems = countdown(args.questions, args.seed)

    async def attempt(name: str, question: str, params: dict) -> dict:
        chosen = get_strategy(name)
        meter = BudgetMeter(Budget(), backend.model.shape)
        started = time.perf_counter()
        result = await chosen.run(question, ReasoningContext(backend, meter), chosen.parse_params(params))
        usage = meter.snapshot()
        return {
            "seconds": time.perf_counter() - started,
            "answer": result.answer,
            "output": result.output,
            "completion_tokens": usage.completion_tokens,
            "critical_path_tokens": usage.critical_path_tokens,
        }

    base = {"decomposition": "countdown", "max_children": args.children, "thread_max_tokens": args.thread_tokens}
    rows = []
    try:
        await attempt("spawn_join", problems[0].question, base)  # warm-up: not counted
        for index, problem in enumerate(problems):
            modes = ["concurrent", "serial"] if index % 2 == 0 else ["serial", "concurrent"]
            row: dict = {"id": problem.id, "target": problem.meta["target"], "numbers": problem.meta["numbers"]}
            for mode in modes:
                outcome = await attempt("spawn_join", problem.question, base | {"concurrent": mode == "concurrent"})
                outcome["correct"] = is_correct(problem, outcome["answer"], outcome["output"])
                row[mode] = outcome
            chain_tokens = row["concurrent"]["completion_tokens"]
            chain = await attempt("direct", problem.question, {"max_tokens": chain_tokens})
            chain["correct"] = is_correct(problem, chain["answer"], chain["output"])
            row["one_chain"] = chain
            rows.append(row)
            print(
                f"[{index + 1}/{len(problems)}] concurrent {row['concurrent']['seconds']:.1f} s "
                f"({row['concurrent']['correct']}), serial {row['serial']['seconds']:.1f} s "
                f"({row['serial']['correct']}), one chain ({chain['correct']})"
            )
    finally:
        await backend.aclose()

    def summary(mode: str) -> dict:
        picked = [r[mode] for r in rows]
        return {
            "accuracy": sum(p["correct"] for p in picked) / len(picked),
            "mean_seconds": statistics.mean(p["seconds"] for p in picked),
            "mean_completion_tokens": statistics.mean(p["completion_tokens"] for p in picked),
            "mean_critical_path_tokens": statistics.mean(p["critical_path_tokens"] or 0 for p in picked),
        }

    report = {
        "benchmark": "spawn_join_countdown",
        "questions": len(rows),
        "seed": args.seed,
        "children": args.children,
        "concurrent": summary("concurrent"),
        "serial": summary("serial"),
        "one_chain": summary("one_chain"),
        "rows": rows,
    }
    report["wall_time_ratio_concurrent_over_serial"] = (
        report["concurrent"]["mean_seconds"] / report["serial"]["mean_seconds"]
    )
    for row in report["rows"]:
        for mode in ("concurrent", "serial", "one_chain"):
            row[mode].pop("output")
    return report


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--thread-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    result = anyio.run(main, parser.parse_args())
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "spawn_join_countdown.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    print(f"saved {out}")

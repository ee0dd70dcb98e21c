"""spawn/join on Countdown: the same child threads run concurrently vs one after another.

Both modes use the Countdown split: one child per first operation, each child making
``--child-samples`` tries in one request (the first whose expression checks is kept). They
do the same work, so the headline ratio is wall time. Sampled threads differ in length from
run to run (and batched CPU decoding is not bit-identical to unbatched), so the report also
gives seconds per completion token. For reference, one long chain (``direct``) gets as many
completion tokens as the concurrent run used. Per fan-out, the order of the modes alternates
per question so drift on this shared machine hits both alike.

    .venv/bin/python benchmarks/spawn_join_countdown.py [--questions 10] [--children 8]
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
    from embedded import Engine, embedded_engine

    from harness.datasets import countdown
    from harness.grading import is_correct
    from orchestrator.core.budget import Budget
    from strategies import get_strategy

    problems = countdown(args.questions, args.seed)

    async def attempt(engine: Engine, name: str, question: str, params: dict) -> dict:
        chosen = get_strategy(name)
        session = engine.session(Budget())
        started = time.perf_counter()
        result = await chosen.run(question, session, chosen.parse_params(params))
        usage = session.meter.snapshot()
        return {
            "seconds": time.perf_counter() - started,
            "answer": result.answer,
            "output": result.output,
            "completion_tokens": usage.completion_tokens,
            "critical_path_tokens": usage.critical_path_tokens,
        }

    async def graded(engine: Engine, problem, name: str, params: dict) -> dict:
        outcome = await attempt(engine, name, problem.question, params)
        outcome["correct"] = is_correct(problem, outcome["answer"], outcome["output"])
        del outcome["output"]
        return outcome

    fan_outs = [int(n) for n in args.children.split(",")]
    report: dict = {
        "benchmark": "spawn_join_countdown",
        "questions": len(problems),
        "seed": args.seed,
        "child_samples": args.child_samples,
        "temperature": args.temperature,
        "thread_tokens": args.thread_tokens,
    }
    async with embedded_engine() as engine:
        await attempt(engine, "spawn_join", problems[0].question, {"decomposition": "countdown"})  # warm-up
        for children in fan_outs:
            base = {
                "decomposition": "countdown",
                "max_children": children,
                "thread_max_tokens": args.thread_tokens,
                "child_samples": args.child_samples,
                "temperature": args.temperature,
            }
            rows = []
            for index, problem in enumerate(problems):
                row: dict = {"id": problem.id, "target": problem.meta["target"], "numbers": problem.meta["numbers"]}
                for mode in ["concurrent", "serial"] if index % 2 == 0 else ["serial", "concurrent"]:
                    row[mode] = await graded(engine, problem, "spawn_join", base | {"concurrent": mode == "concurrent"})
                chain_tokens = row["concurrent"]["completion_tokens"]
                row["one_chain"] = await graded(engine, problem, "direct", {"max_tokens": chain_tokens})
                rows.append(row)
                print(
                    f"children={children} [{index + 1}/{len(problems)}] "
                    + ", ".join(f"{m} {row[m]['seconds']:.1f} s ({row[m]['correct']})" for m in row if m in MODES)
                )
            report[f"children={children}"] = summarise(rows)
    return report


MODES = ("concurrent", "serial", "one_chain")


def without_rows(value):
    """A fan-out's summary without its per-question rows (for printing)."""
    return {k: v for k, v in value.items() if k != "rows"} if isinstance(value, dict) else value


def summarise(rows: list[dict]) -> dict:
    """Accuracy, wall time and tokens per mode, and the concurrent/serial ratios."""
    modes = {}
    for mode in MODES:
        picked = [r[mode] for r in rows]
        modes[mode] = {
            "accuracy": sum(p["correct"] for p in picked) / len(picked),
            "mean_seconds": statistics.mean(p["seconds"] for p in picked),
            "mean_completion_tokens": statistics.mean(p["completion_tokens"] for p in picked),
            "mean_critical_path_tokens": statistics.mean(p["critical_path_tokens"] or 0 for p in picked),
            "seconds_per_completion_token": sum(p["seconds"] for p in picked)
            / sum(p["completion_tokens"] for p in picked),
        }
    concurrent, serial = modes["concurrent"], modes["serial"]
    return {
        **modes,
        "wall_time_ratio_concurrent_over_serial": concurrent["mean_seconds"] / serial["mean_seconds"],
        "per_token_wall_time_ratio": concurrent["seconds_per_completion_token"]
        / serial["seconds_per_completion_token"],
        "rows": rows,
    }


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--children", default="8", help="comma-separated fan-outs to measure")
    parser.add_argument("--thread-tokens", type=int, default=128)
    parser.add_argument("--child-samples", type=int, default=4, help="tries per child (the first that checks wins)")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    result = anyio.run(main, parser.parse_args())
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "spawn_join_countdown.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: without_rows(v) for k, v in result.items()}, indent=2))
    print(f"saved {out}")

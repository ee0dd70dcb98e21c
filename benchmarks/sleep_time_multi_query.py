"""Sleep-time compute vs none on stateful multi-query tasks (one context, four questions).

Each context's memory is precomputed once; every question is then answered with a small
test-time budget, with the memory and without it. Test-time tokens are the completion
tokens spent at question time (the paper's measure); prompt tokens are reported too.
Without memory, larger budgets and best-of-N votes give the curve to match.

    .venv/bin/python benchmarks/sleep_time_multi_query.py [--contexts 8] [--seed 0]
    .venv/bin/python benchmarks/sleep_time_multi_query.py --memory oracle --contexts 4

``--memory oracle`` replaces the precompute with a perfect sleeper's memory: each of the
context's questions with its right answer, stored through the same context path. It bounds
what the query phase can gain from a memory, separately from how well the model writes one.

Reports: accuracy at equal test-time budget; test-time tokens the no-memory curve needs to
reach the memory's accuracy (ratio); cost per query at 4 queries per context, counting the
sleep tokens amortised over the context's questions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import anyio

RESULTS_DIR = Path(__file__).parent / "results"
BUDGETS = [32, 64, 128, 256]
VOTES = [2, 4, 8]


async def main(args: argparse.Namespace) -> dict:
    from harness.datasets import multi_query_contexts
    from harness.grading import is_correct
    from orchestrator.core.backends.inprocess import InProcessBackend
    from orchestrator.core.budget import Budget
    from orchestrator.core.model_catalog import ensure_model
    from orchestrator.core.settings import EngineOptions, Settings
    from orchestrator.core.store import Store, open_redis
    from service.runtime import Runtime
    from verifiers.registry import VerifierSet

    settings = Settings()
    model = ensure_model(settings.model_cache_dir, settings.model)
    backend = await InProcessBackend.start(str(model), EngineOptions(cpu_kv_cache_space_gib=2))
    connection = await open_redis(None, Path(tempfile.mkdtemp(prefix="ttc-bench-")))
    runtime = Runtime(settings, backend, Store(connection, "bench"), VerifierSet.build(settings))
    problems = multi_query_contexts(args.contexts, args.seed)
    label = "oracle" if args.memory == "oracle" else "memory"
    contexts: dict[str, dict] = {}
    points: dict[str, list[dict]] = {}
    limiter = anyio.CapacityLimiter(args.concurrency)
    loose = Budget(deadline_s=3600)

    async def answer(problem, label: str, strategy: str, params: dict, context_id: str | None) -> None:
        question = problem.meta["query"] if context_id else problem.question
        async with limiter:
            job = await runtime.reason(question, budget=loose, strategy=strategy, params=params, context_id=context_id)
        points.setdefault(label, []).append(
            {
                "id": problem.id,
                "correct": is_correct(problem, job.answer, job.output),
                "completion_tokens": job.usage.completion_tokens,
                "prompt_tokens": job.usage.prompt_tokens - job.usage.cached_prompt_tokens,
            }
        )

    try:
        sleep = {"rounds": args.rounds, "round_max_tokens": args.round_tokens}
        for problem in problems:
            key = problem.meta["context_id"]
            if key in contexts:
                continue
            if args.memory == "oracle":
                record = await oracle_context(runtime, [p for p in problems if p.meta["context_id"] == key])
            else:
                record = await runtime.precompute(problem.meta["context"], sleep_budget=loose, params=sleep)
            contexts[key] = {"id": record.id, "sleep_tokens": record.sleep_tokens, "memory": record.memory}
            print(f"{key}: {record.sleep_tokens} sleep tokens, memory:\n{record.memory}\n")
        async with anyio.create_task_group() as group:
            for problem in problems:
                context_id = contexts[problem.meta["context_id"]]["id"]
                for b in BUDGETS:
                    params = {"max_tokens": b}
                    group.start_soon(answer, problem, f"{label}/direct@{b}", "direct", params, context_id)
                    group.start_soon(answer, problem, f"none/direct@{b}", "direct", params, None)
                for n in VOTES:
                    params = {"n": n, "max_tokens": 128, "adaptive": False}
                    group.start_soon(answer, problem, f"none/best_of_{n}@128", "best_of_n", params, None)
    finally:
        await runtime.verifiers.aclose()
        await backend.aclose()
        await connection.aclose()

    summary = {
        label: {
            "accuracy": sum(p["correct"] for p in rows) / len(rows),
            "test_time_tokens": statistics.mean(p["completion_tokens"] for p in rows),
            "prompt_tokens": statistics.mean(p["prompt_tokens"] for p in rows),
        }
        for label, rows in sorted(points.items())
    }
    sleep_per_query = statistics.mean(c["sleep_tokens"] for c in contexts.values()) / 4
    memory_points = {b: _point(summary[f"{label}/direct@{b}"]) for b in BUDGETS}
    # The no-memory curve: direct at each budget (keyed by budget, so the same-budget comparison
    # is direct vs direct) and the votes (keyed apart, negative, as they have no budget of their own).
    baseline = {b: _point(summary[f"none/direct@{b}"]) for b in BUDGETS}
    baseline |= {-n: _point(summary[f"none/best_of_{n}@128"]) for n in VOTES}
    rows = []
    for row in matched(memory_points, baseline):
        memory_cost = row["memory_tokens"] + sleep_per_query
        rows.append(
            row
            | {
                "cost_per_query_with_sleep": memory_cost,
                "cost_ratio_at_4_queries": row["baseline_tokens_to_match"] / memory_cost,
            }
        )
    return {
        "benchmark": "sleep_time_multi_query",
        "memory": args.memory,
        "contexts": len(contexts),
        "questions": len(problems),
        "seed": args.seed,
        "sleep_params": sleep,
        "mean_sleep_tokens_per_context": sleep_per_query * 4,
        "summary": summary,
        "memory_vs_none": rows,
        "memories": {k: v["memory"] for k, v in contexts.items()},
    }


async def oracle_context(runtime, questions: list):
    """A context whose memory is every one of its questions with the right answer (no sleep tokens)."""
    from orchestrator.core.budget import Usage

    notes = "\n".join(f"Q: {p.meta['query']} A: {p.answer}" for p in questions)
    context, job = await runtime.create_context(questions[0].meta["context"])
    return await runtime.store.end_precompute(context.id, job.id, notes, Usage(), None)


def matched(memory: dict[int, tuple[float, float]], baseline: dict[int, tuple[float, float]]) -> list[dict]:
    """Per budget: the memory point, and the test-time tokens the no-memory baseline needs to match
    its accuracy on the concave hull of the baseline's points (any mix of them)."""
    from harness.efficiency import tokens_to_reach
    from harness.report import concave_hull

    curve = concave_hull([(0.0, 0.0), *((tokens, accuracy) for accuracy, tokens in baseline.values())])
    rows = []
    for budget, (accuracy, tokens) in sorted(memory.items()):
        needed, note = tokens_to_reach(curve, accuracy)
        rows.append(
            {
                "budget": budget,
                "memory_accuracy": accuracy,
                "memory_tokens": tokens,
                "baseline_tokens_to_match": needed,
                "test_time_ratio": needed / tokens if tokens > 0 else None,
                "note": note,
            }
        )
    return rows


def _point(row: dict) -> tuple[float, float]:
    return row["accuracy"], row["test_time_tokens"]


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--round-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory", choices=["sleep", "oracle"], default="sleep", help="who writes the memory")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    report = anyio.run(main, parser.parse_args())
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / ("sleep_time_multi_query.json" if report["memory"] == "sleep" else "sleep_time_oracle.json")
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("summary", "memory_vs_none")}, indent=2))
    print(f"saved {out}")

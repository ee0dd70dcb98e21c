"""Sleep-time compute vs none on stateful multi-query tasks (one context, several questions).

Each test context's memory is precomputed once (derived facts, checked, grounded and agreed on:
``strategies.sleep_time``); every question is then answered with and without it, direct at
several budgets and best-of-N, in one run on one engine. Test-time tokens are the completion
tokens spent at question time (the paper's measure); cost per query counts compute tokens
(uncached prompt + completion) on both sides, plus the context's sleep tokens shared by 1, 4
or 10 questions. Intervals resample contexts (``harness.sleep_report``).

Resumable: answered questions land in ``results/sleep_time/<dataset>-<memory>.jsonl`` and
memories in ``...contexts.jsonl``; a rerun with the same arguments skips them.

    .venv/bin/python benchmarks/sleep_time_multi_query.py --dataset multi_query --contexts 30
    .venv/bin/python benchmarks/sleep_time_multi_query.py --dataset bakery --contexts 30
    .venv/bin/python benchmarks/sleep_time_multi_query.py --dataset stateful_gsm --contexts 30
    .venv/bin/python benchmarks/sleep_time_multi_query.py --memory oracle --contexts 8
    .venv/bin/python benchmarks/sleep_time_multi_query.py --dataset bakery --report   # tables again, no engine

``--memory oracle`` stores a perfect sleeper's memory instead (each question's quantity as a
fact, no sleep tokens): what the query phase can gain from a memory, apart from how well the
model writes one.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import anyio
from jsonl import append_row, read_rows

RESULTS_DIR = Path(__file__).parent / "results" / "sleep_time"
BUDGETS = [256, 512]  # the 0.5B model writes 200-400 tokens of working; fewer cut most answers
VOTES = [2, 4]
MEMORY_VOTES = [2]
VOTE_TOKENS = 512


def configurations() -> list[tuple[str, str, dict, bool]]:
    """(label, strategy, params, with memory) of every way a question is answered."""
    runs = []
    for budget in BUDGETS:
        runs += [
            (f"{side}/direct@{budget}", "direct", {"max_tokens": budget}, side == "memory")
            for side in ("memory", "none")
        ]
    for n in VOTES:
        params = {"n": n, "max_tokens": VOTE_TOKENS, "adaptive": False}
        runs.append((f"none/best_of_{n}@{VOTE_TOKENS}", "best_of_n", params, False))
        if n in MEMORY_VOTES:
            runs.append((f"memory/best_of_{n}@{VOTE_TOKENS}", "best_of_n", params, True))
    return runs


def whole_contexts(dataset: str, contexts: int, seed: int) -> list:
    """The test split's first ``contexts`` contexts, each with all of its questions."""
    from harness.catalog import load_dataset

    problems = load_dataset(dataset, "test", contexts * 6, seed)
    chosen = list(dict.fromkeys(p.meta["context_id"] for p in problems))[:contexts]
    return [p for p in problems if p.meta["context_id"] in chosen]


async def main(args: argparse.Namespace) -> dict:
    from harness.grading import is_correct
    from harness.sleep_report import graded_answers, graded_facts
    from orchestrator.core.backends.inprocess import InProcessBackend
    from orchestrator.core.budget import Budget
    from orchestrator.core.model_catalog import ensure_model
    from orchestrator.core.settings import EngineOptions, RequestLimits, Settings
    from orchestrator.core.store import Store, open_redis
    from service.runtime import Runtime
    from verifiers.registry import VerifierSet

    stem = RESULTS_DIR / f"{args.dataset}-{args.memory}"
    answers_path, contexts_path = stem.with_suffix(".jsonl"), Path(f"{stem}.contexts.jsonl")
    answered = {(row["label"], row["id"]) for row in read_rows(answers_path)}
    memories = {row["context"]: row for row in read_rows(contexts_path)}
    problems = whole_contexts(args.dataset, args.contexts, args.seed)
    settings = Settings(limits=RequestLimits(deadline_s=3600))  # queued behind the other contexts on 2 cores
    model = ensure_model(settings.model_cache_dir, settings.model)
    backend = await InProcessBackend.start(str(model), EngineOptions(cpu_kv_cache_space_gib=2))
    connection = await open_redis(None, Path(tempfile.mkdtemp(prefix="ttc-bench-")))
    runtime = Runtime(settings, backend, Store(connection, "bench"), VerifierSet.build(settings))
    loose = Budget(deadline_s=3600, max_tokens=40_000)  # the sleep's own params bound it, not the default 4,096
    sleep = sleep_params(args)
    stored_ids: dict[str, str] = {}
    limiter = anyio.CapacityLimiter(args.concurrency)

    async def remember(key: str, questions: list) -> None:
        """The context stored with its memory: recomputed if new, restored from the file if not."""
        known = memories.get(key)
        if args.memory == "oracle":
            record = await context_with_memory(
                runtime, questions[0].meta["context"], oracle_memory(questions), {"retrieve": 0}
            )
        elif known is None:
            async with limiter:
                record = await runtime.precompute(questions[0].meta["context"], sleep_budget=loose, params=sleep)
            job = await runtime.store.get_job(record.job_id)
            quantities = questions[0].meta["quantities"]
            answered = [candidate["answer"] for candidate in job.trace.get("candidates", [])]
            known = {"context": key, "sleep_tokens": record.sleep_tokens, "memory": record.memory or "",
                     "stages": job.trace.get("stages"), "dropped": job.trace.get("dropped", []),
                     "facts": graded_facts((record.memory or "").splitlines(), quantities),
                     "candidates": graded_answers(answered, quantities)}  # fmt: skip
            append_row(contexts_path, known)
            print(f"{key}: {record.sleep_tokens} sleep tokens, {known['facts']} facts kept, stages {known['stages']}")
        else:
            record = await context_with_memory(runtime, questions[0].meta["context"], known["memory"], sleep)
        memories[key] = known or {"context": key, "sleep_tokens": 0, "memory": record.memory}
        stored_ids[key] = record.id

    async def answer(problem, label: str, strategy: str, params: dict, with_memory: bool) -> None:
        context_id = stored_ids[problem.meta["context_id"]] if with_memory else None
        question = problem.meta["query"] if with_memory else problem.question
        async with limiter:
            job = await runtime.reason(question, budget=loose, strategy=strategy, params=params, context_id=context_id)
        row = {"label": label, "id": problem.id, "context": problem.meta["context_id"],
               "correct": is_correct(problem, job.answer, job.output),
               "completion_tokens": job.usage.completion_tokens, "compute_tokens": job.usage.compute_tokens,
               "facts_used": (job.trace.get("context") or {}).get("facts_used")}  # fmt: skip
        append_row(answers_path, row)

    try:
        by_context: dict[str, list] = {}
        for problem in problems:
            by_context.setdefault(problem.meta["context_id"], []).append(problem)
        async with anyio.create_task_group() as group:
            for key, questions in by_context.items():
                group.start_soon(remember, key, questions)
        async with anyio.create_task_group() as group:
            for problem in problems:
                for label, strategy, params, with_memory in configurations():
                    if (label, problem.id) not in answered:
                        group.start_soon(answer, problem, label, strategy, params, with_memory)
    finally:
        await runtime.verifiers.aclose()
        await backend.aclose()
        await connection.aclose()
    return report(args, sleep, list(read_rows(answers_path)), memories)


def sleep_params(args: argparse.Namespace) -> dict:
    """The sleep params the run asks for."""
    return {"rounds": args.rounds, "questions": args.questions, "samples": args.samples, "agree": args.agree,
            "round_max_tokens": args.round_tokens, "retrieve": args.retrieve}  # fmt: skip


def stored_report(args: argparse.Namespace) -> dict:
    """The report recomputed from the saved rows and memories (no engine)."""
    stem = RESULTS_DIR / f"{args.dataset}-{args.memory}"
    memories = {row["context"]: row for row in read_rows(Path(f"{stem}.contexts.jsonl"))}
    return report(args, sleep_params(args), read_rows(stem.with_suffix(".jsonl")), memories)


def report(args, sleep: dict, rows: list[dict], memories: dict[str, dict]) -> dict:
    """The saved report: per configuration, the headline comparison, and the facts' grades."""
    from harness.sleep_report import accuracy_intervals, comparison

    sleep_tokens = {key: int(row.get("sleep_tokens", 0)) for key, row in memories.items()}
    kept = [row["facts"] for row in memories.values() if "facts" in row]
    candidates = [row["candidates"] for row in memories.values() if "candidates" in row]
    stages: dict[str, int] = {}
    for row in memories.values():
        for stage, count in (row.get("stages") or {}).items():
            stages[stage] = stages.get(stage, 0) + count
    return {
        "benchmark": "sleep_time_multi_query",
        "dataset": args.dataset,
        "split": "test",
        "memory": args.memory,
        "contexts": len(memories),
        "questions": len({row["id"] for row in rows}),
        "sleep_params": sleep,
        "mean_sleep_tokens_per_context": sum(sleep_tokens.values()) / max(1, len(sleep_tokens)),
        "configurations": accuracy_intervals(rows),
        "comparison": comparison(rows, sleep_tokens),
        "facts": {
            "filter_stages": stages,
            "candidates_right": _share(candidates),
            "kept_right": _share(kept),
        },
    }


def markdown(report: dict) -> str:
    """The report as the README's tables: each configuration, then the headline comparison."""
    lines = ["| configuration | accuracy (95% interval) | test-time tokens | compute tokens |", "|---|---|---|---|"]
    for label, row in report["configurations"].items():
        low, high = row["interval"]
        lines.append(f"| {label} | {row['accuracy']:.3f} ({low:.2f}–{high:.2f}) | {row['completion_tokens']:.0f} | "
                     f"{row['compute_tokens']:.0f} |")  # fmt: skip
    lines += ["", "| measure | estimate | 95% interval | draws undefined |", "|---|---|---|---|"]
    for name, value in report["comparison"].items():
        interval = value["interval"]
        shown = "—" if interval is None else f"{interval[0]:.2f}–{interval[1]:.2f}"
        lines.append(f"| {name} | {value['estimate']:.3f} | {shown} | {value.get('undefined_draws', 0)} |")
    facts = report["facts"]
    lines += ["", f"filter stages: {facts['filter_stages']}; candidates right {facts['candidates_right']}; "
              f"kept right {facts['kept_right']}"]  # fmt: skip
    return "\n".join(lines)


def _share(grades: list[dict]) -> dict:
    facts, right = sum(g["facts"] for g in grades), sum(g["right"] for g in grades)
    return {"facts": facts, "right": right, "share": right / facts if facts else None}


def oracle_memory(questions: list) -> str:
    """A perfect sleeper's memory: each question's quantity as a fact."""
    return "\n".join(f"Q: {p.meta['query']} A: → {p.answer}" for p in questions)


async def context_with_memory(runtime, text: str, memory: str, params: dict):
    """A context stored with a memory written elsewhere (the oracle's, or an earlier run's, so a
    resumed run does not sleep twice); no sleep tokens."""
    from orchestrator.core.budget import Usage

    context, job = await runtime.create_context(text, params=params)
    return await runtime.store.end_precompute(context.id, job.id, memory, Usage(), None)


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["multi_query", "bakery", "stateful_gsm"], default="multi_query")
    parser.add_argument("--contexts", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--agree", type=int, default=3)
    parser.add_argument("--round-tokens", type=int, default=384)
    parser.add_argument("--retrieve", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory", choices=["sleep", "oracle"], default="sleep", help="who writes the memory")
    parser.add_argument("--report", action="store_true", help="recompute the report from the saved rows, run nothing")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    parsed = parser.parse_args()
    result = stored_report(parsed) if parsed.report else anyio.run(main, parsed)
    out = RESULTS_DIR / f"{parsed.dataset}-{parsed.memory}.json"
    out.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print(f"saved {out}")

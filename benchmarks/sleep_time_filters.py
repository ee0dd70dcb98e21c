"""The sleep phase's fact filter fitted on dev contexts and scored on test ones.

Each context of the dataset's dev and test splits sleeps once with the filters open (any agreement
counts, the judge's bar at 0) and the judge scoring every fact that passed the other checks; every
answered question is kept as a candidate (its answer's votes, whether a working checks and is
grounded, the judge's score) and graded against the context's generator. The rule fitted on dev
(``harness.fact_filter``: the agreement count and judge bar with the most right-minus-wrong facts)
and the service's default rule are then scored on test, with what each filter stage loses and a
paired interval on the difference. Test contexts share no content with dev ones.

Several datasets pool their dev contexts for one fit and their test contexts for one score.

Resumable: each context's candidates land in ``results/sleep_time/filters-<dataset>.jsonl``; a
rerun skips them. ``--report`` refits and rescores from those files, with no engine.

    .venv/bin/python benchmarks/sleep_time_filters.py --dataset multi_query --contexts 12
    .venv/bin/python benchmarks/sleep_time_filters.py --dataset bakery --contexts 12
    .venv/bin/python benchmarks/sleep_time_filters.py --dataset multi_query bakery --report   # pooled
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import anyio
from jsonl import append_row, read_rows

RESULTS_DIR = Path(__file__).parent / "results" / "sleep_time"
SPLITS = ("dev", "test")


def first_contexts(dataset: str, split: str, contexts: int, seed: int) -> dict[str, object]:
    """The split's first ``contexts`` contexts, each by one of its questions (they share the context)."""
    from harness.catalog import load_dataset

    chosen: dict[str, object] = {}
    for problem in load_dataset(dataset, split, contexts * 6, seed):
        chosen.setdefault(problem.meta["context_id"], problem)
    return dict(list(chosen.items())[:contexts])


async def sleep_everywhere(args: argparse.Namespace, dataset: str, path: Path) -> None:
    """Sleep over every context not yet in ``path``, the filters open, and store its graded candidates."""
    from embedded import embedded_engine

    from harness.sleep_report import is_known_quantity
    from orchestrator.core.budget import Budget
    from strategies.sleep_time import SleepParams, precompute_memory

    done = {(row["split"], row["context"]) for row in read_rows(path)}
    params = SleepParams(rounds=1, questions=args.questions, samples=args.samples, agree=1,
                         round_max_tokens=args.round_tokens, judge=args.judge, judge_above=0.0)  # fmt: skip
    limiter = anyio.CapacityLimiter(args.concurrency)

    async with embedded_engine() as engine:

        async def sleep(split: str, key: str, problem) -> None:
            async with limiter:
                session = engine.session(Budget(deadline_s=3600, max_tokens=40_000))
                memory = await precompute_memory(problem.meta["context"], session, params)
            quantities = problem.meta["quantities"]
            candidates = [c.model_dump() | {"right": is_known_quantity(c.answer, quantities)}
                          for c in memory.candidates]  # fmt: skip
            row = {"split": split, "context": key, "sleep_tokens": session.meter.usage.compute_tokens,
                   "candidates": candidates}  # fmt: skip
            append_row(path, row)
            right = sum(c["right"] for c in candidates)
            print(f"{split} {key}: {len(candidates)} candidates, {right} right, {row['sleep_tokens']} tokens")

        async with anyio.create_task_group() as group:
            for split in SPLITS:
                for key, problem in first_contexts(dataset, split, args.contexts, args.seed).items():
                    if (split, key) not in done:
                        group.start_soon(sleep, split, key, problem)


def report(args: argparse.Namespace, rows: list[dict]) -> dict:
    """The rule fitted on dev; it and the default rule scored on dev and test."""
    from harness.fact_filter import FilterRule, fit_rule, net_difference, scored, stage_losses
    from strategies.sleep_time import SleepParams

    by_split = {split: {row["context"]: row["candidates"] for row in rows if row["split"] == split} for split in SPLITS}
    fitted = fit_rule([c for group in by_split["dev"].values() for c in group], args.samples)
    default = FilterRule(SleepParams().agree)
    test = [c for group in by_split["test"].values() for c in group]
    return {
        "benchmark": "sleep_time_filters",
        "datasets": args.dataset,
        "judge": args.judge,
        "contexts": {split: len(by_split[split]) for split in SPLITS},
        "samples": args.samples,
        "mean_sleep_tokens_per_context": sum(row["sleep_tokens"] for row in rows) / max(1, len(rows)),
        "fitted_on_dev": fitted.params(),
        "default": default.params(),
        "scores": {
            split: {"default": scored(default, by_split[split]), "fitted": scored(fitted, by_split[split])}
            for split in SPLITS
        },
        "test_fitted_minus_default_net_per_context": net_difference(fitted, default, by_split["test"]),
        "test_stage_losses": {"default": stage_losses(default, test), "fitted": stage_losses(fitted, test)},
    }


def markdown(result: dict) -> str:
    """The report as the README's table."""
    lines = ["| split | rule | facts kept | right | share right (95%) | right − wrong per context (95%) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for split, rules in result["scores"].items():
        for name, row in rules.items():
            share = "—" if row["share_right"] is None else f"{row['share_right']:.2f}"
            share += f" {_interval(row['share_interval'], '.2f')}"
            lines.append(f"| {split} | {name} {row['rule']} | {row['kept']} | {row['right']} | {share} | "
                         f"{row['net_right_per_context']:+.2f} {_interval(row['net_interval'])} |")  # fmt: skip
    difference = result["test_fitted_minus_default_net_per_context"]
    lines += ["", f"test, fitted − default, right − wrong per context: {difference['estimate']:+.2f} "
              f"{_interval(difference['interval'])}"]  # fmt: skip
    for name, stages in result["test_stage_losses"].items():
        lines.append(f"test stages ({name}): " + ", ".join(f"{s['stage']} {s['right']}/{s['left']}" for s in stages))
    return "\n".join(lines)


def _interval(interval: list[float] | None, form: str = "+.2f") -> str:
    return "(—)" if interval is None else f"({interval[0]:{form}} to {interval[1]:{form}})"


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    families = ["multi_query", "bakery", "stateful_gsm"]
    parser.add_argument("--dataset", nargs="+", choices=families, default=["multi_query"], help="one or more, pooled")
    parser.add_argument("--contexts", type=int, default=12, help="per split")
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--round-tokens", type=int, default=384)
    parser.add_argument("--judge", default="self_judge", help="the verifier that scores each fact")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", action="store_true", help="refit and rescore from the saved rows, run nothing")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    parsed = parser.parse_args()
    rows = []
    for dataset in parsed.dataset:
        rows_path = RESULTS_DIR / f"filters-{dataset}.jsonl"
        if not parsed.report:
            anyio.run(sleep_everywhere, parsed, dataset, rows_path)
        rows += read_rows(rows_path)
    result = report(parsed, rows)
    out = RESULTS_DIR / f"filters-{'+'.join(parsed.dataset)}.json"
    out.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print(f"saved {out}")

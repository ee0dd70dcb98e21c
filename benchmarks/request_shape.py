"""Do samples drawn in one large request differ from samples drawn in several small ones?

A one-pass sweep draws each item's 16 samples in one request (n = 16); ``auto`` draws its
waves as requests of 2-8. If the engine's parallel sampling made large-n samples worse or
less diverse, every replay on stored passes would misjudge what waves get. For each dev item
this draws 16 samples both ways — one request of n = 16, and four of n = 4 — in alternating
order (so neither shape always runs first), and compares, paired by item: the share of
correct samples, majority-vote accuracy, and distinct answers per item, with 95% bootstrap
intervals on the differences.

    .venv/bin/python benchmarks/request_shape.py --items 100
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path

import anyio
from embedded import Engine, embedded_engine  # benchmarks/ is the script's directory

from harness.catalog import load_dataset
from harness.datasets import Problem
from harness.efficiency import paired_difference
from harness.grading import is_correct
from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.budget import Budget
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from strategies.selection import answer_of

RESULTS = Path(__file__).parent / "results" / "request_shape.json"
SAMPLING = SamplingSettings(n=16, temperature=0.7, max_tokens=256, logprobs=5)
SHAPES = {"one_request_of_16": [16], "four_requests_of_4": [4, 4, 4, 4]}


async def draw(engine: Engine, problem: Problem, sizes: list[int]) -> dict[str, float]:
    """16 samples as requests of ``sizes``: share correct, majority right, distinct answers."""
    session = engine.session(Budget())
    prompt = session.renderer.render_question(problem.question, system=DEFAULT_SYSTEM_PROMPT)
    answers = []
    for size in sizes:
        [result] = await session.generate([prompt], SAMPLING.model_copy(update={"n": size}))
        answers += [answer_of(completion.text) for completion in result.completions]
    votes = Counter(answer for answer in answers if answer is not None)
    leader = votes.most_common(1)[0][0] if votes else None
    return {
        "share_correct": statistics.fmean(is_correct(problem, answer, None) for answer in answers),
        "majority_correct": float(is_correct(problem, leader, None)),
        "distinct_answers": float(len(votes)),
    }


def paired(rows: list[dict], measure: str) -> dict:
    """Both shapes' means of ``measure`` and the mean of (small requests - one request) with a 95% interval."""
    one = [row["one_request_of_16"][measure] for row in rows]
    four = [row["four_requests_of_4"][measure] for row in rows]
    return {
        "one_request_of_16": statistics.fmean(one),
        "four_requests_of_4": statistics.fmean(four),
        **paired_difference(one, four),
    }


async def main(args: argparse.Namespace) -> dict:
    problems = load_dataset(args.dataset, "dev", args.items, 0)
    rows: list[dict] = []
    async with embedded_engine() as engine:
        limiter = anyio.Semaphore(args.concurrency)

        async def item(index: int, problem: Problem) -> None:
            order = list(SHAPES) if index % 2 == 0 else list(reversed(SHAPES))
            async with limiter:
                row = {name: await draw(engine, problem, SHAPES[name]) for name in order}
            rows.append(row)

        async with anyio.create_task_group() as group:
            for index, problem in enumerate(problems):
                group.start_soon(item, index, problem)
    report = {
        "command": f"python benchmarks/request_shape.py --items {args.items} --dataset {args.dataset}",
        "items": len(rows),
        **{measure: paired(rows, measure) for measure in ("share_correct", "majority_correct", "distinct_answers")},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--dataset", default="arithmetic")
    parser.add_argument("--concurrency", type=int, default=8)
    anyio.run(main, parser.parse_args())

"""Best-of-N (majority, weighted, argmax) vs beam search at 1, 2, 4, 8, 16 samples' worth of tokens.

Best-of-N curves come from one pass: 16 samples per question, scored once by the calculator
verifier; the first k samples give the k-sample point (as search-and-learn does). Beam search
runs once per budget with N = k beams x samples and a token budget of k average samples.

    .venv/bin/python benchmarks/bon_vs_beam.py [--questions 7] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import anyio

RESULTS_DIR = Path(__file__).parent / "results"
BUDGETS = [1, 2, 4, 8, 16]
BEAM_SHAPES = {1: (1, 1), 2: (1, 2), 4: (2, 2), 8: (2, 4), 16: (4, 4)}  # width x samples_per_beam = k


async def main(args: argparse.Namespace) -> dict:
    from embedded import embedded_engine

    from harness.datasets import graded_arithmetic
    from orchestrator.core.budget import Budget
    from strategies import get_strategy
    from strategies.selection import Sample, choose
    from verifiers.outcome import answers_match

    problems = graded_arithmetic(args.questions, args.seed)
    best_of_n = get_strategy("best_of_n")
    one_pass = best_of_n.parse_params(
        {"n": max(BUDGETS), "selection": "weighted", "adaptive": False, "temperature": 0.7, "max_tokens": 160}
    )
    passes: list[list[Sample]] = []
    async with embedded_engine() as engine:
        for index, problem in enumerate(problems):  # one scored pass of 16 samples per question
            result = await best_of_n.run(problem.question, engine.session(Budget()), one_pass)
            passes.append([Sample.model_validate(sample) for sample in result.trace["samples"]])
            right = sum(answers_match(sample.answer, problem.answer) for sample in passes[-1])
            print(f"[{index + 1}/{len(problems)}] sampled 16, right: {right}/16")
        tokens_per_sample = statistics.mean(sample.tokens or 0 for samples in passes for sample in samples)
        curves: dict[str, list[dict]] = {"majority": [], "weighted": [], "argmax": [], "beam_search": []}
        for k in BUDGETS:
            for selection in ("majority", "weighted", "argmax"):
                correct, spent = 0, []
                for problem, samples in zip(problems, passes, strict=True):
                    correct += answers_match(choose(samples[:k], selection).answer, problem.answer)
                    spent.append(sum(sample.tokens or 0 for sample in samples[:k]))
                curves[selection].append(
                    {"k": k, "accuracy": correct / len(problems), "tokens": statistics.mean(spent)}
                )
            width, per_beam = BEAM_SHAPES[k]
            strategy = get_strategy("beam_search")
            params = strategy.parse_params(
                {"width": width, "samples_per_beam": per_beam, "max_steps": 4, "step_max_tokens": 64}
            )
            correct, spent = 0, []
            for problem in problems:
                session = engine.session(Budget(max_tokens=int(k * tokens_per_sample)))
                result = await strategy.run(problem.question, session, params)
                correct += answers_match(result.answer, problem.answer)
                spent.append(session.meter.usage.completion_tokens)
            curves["beam_search"].append(
                {"k": k, "accuracy": correct / len(problems), "tokens": statistics.mean(spent)}
            )
            print(f"k={k:>2}: " + "  ".join(f"{m}={c[-1]['accuracy']:.2f}" for m, c in curves.items()))
    return {
        "benchmark": "bon_vs_beam",
        "questions": len(problems),
        "seed": args.seed,
        "tokens_per_sample": tokens_per_sample,
        "curves": curves,
    }


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    report = anyio.run(main, parser.parse_args())
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "bon_vs_beam.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["curves"], indent=2))
    print(f"saved {out}")

"""Add ``self_judge``'s score to the samples ``benchmarks/signal_samples.py`` stored.

``self_judge`` asks the policy model whether the last step of a solution is correct and reads
P(Yes) from its first token. Scored with "last" aggregation, a whole sample's score is the
judgement of its final prefix: one prompt and one decoded token per sample, the same prompt the
verifier builds (``judge_prompt_text``). Scores go one JSON line per item to
``benchmarks/results/signals/<dataset>-<split>.self_judge.jsonl``, which ``benchmarks/signals.py``
reads when present. A rerun skips the items already scored.

    .venv/bin/python benchmarks/signal_self_judge.py arithmetic gym:chain_sum --split test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anyio
from embedded import Engine, append_each, embedded_engine, stored_ids  # benchmarks/ is the script's directory

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.budget import Budget
from strategies.selection import split_steps
from verifiers.self_judge import judge_prompt_text, probability_of_yes

SAMPLES = Path(__file__).parent / "results" / "signals"
ONE_TOKEN = SamplingSettings(n=1, temperature=0.0, max_tokens=1, logprobs=10)


def scores_path(dataset: str, split: str) -> Path:
    return SAMPLES / f"{dataset.replace(':', '_')}-{split}.self_judge.jsonl"


async def judge_item(engine: Engine, item: dict) -> dict:
    """P(Yes) for the final step of each of the item's samples, in sample order."""
    session = engine.session(Budget())
    questions = [judge_prompt_text(item["question"], split_steps(sample["text"])) for sample in item["samples"]]
    prompts = [session.renderer.render([{"role": "user", "content": question}]) for question in questions]
    results = await session.generate(prompts, ONE_TOKEN)
    scores = []
    for result in results:
        logprobs = result.completions[0].logprobs
        scores.append(probability_of_yes(logprobs[0] if logprobs else None))
    return {"id": item["id"], "self_judge": scores}


async def judge_file(engine: Engine, dataset: str, split: str, concurrency: int) -> None:
    """Score every stored item of one file not scored yet, ``concurrency`` items in flight."""
    source = SAMPLES / f"{dataset.replace(':', '_')}-{split}.jsonl"
    items = [json.loads(line) for line in source.read_text().splitlines()]
    out = scores_path(dataset, split)
    done = stored_ids(out)
    todo = [item for item in items if item["id"] not in done]
    print(f"{dataset} {split}: {len(done)} items scored, {len(todo)} to score", flush=True)
    await append_each(todo, lambda item: judge_item(engine, item), out, concurrency)


async def run(args: argparse.Namespace) -> None:
    async with embedded_engine() as engine:
        for dataset in args.datasets:
            await judge_file(engine, dataset, args.split, args.concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--concurrency", type=int, default=4)
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()

"""Add a trained reward model's scores to the samples ``benchmarks/signal_samples.py`` stored.

The reward model (``ttc train-reward-model``) runs in process on vLLM's pooling runner, as the
service runs it. Each sample is scored twice: as one step (the ``orm`` verifier's view: one tag
after the whole solution) and cut into steps (the ``prm`` verifier's view: a tag after each step,
kept as the list of step scores so ``benchmarks/signals.py`` can aggregate them by min, last or
product). Items the model was trained on are refused (by the content hash of the question).
Scores go one JSON line per item to ``benchmarks/results/signals/<dataset>-<split>.reward-<label>.jsonl``
(with the model directory and its training date), the label being the model directory's name
unless ``--label`` says otherwise; ``benchmarks/signals.py --reward <label>`` reads them. A rerun
skips items already scored with the same model.

    .venv/bin/python benchmarks/signal_reward.py runs/orm-q05 arithmetic gsm8k
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import anyio
from embedded import RewardScorers, append_each, reward_scorers  # benchmarks/ is the script's directory

from harness.reward_data import signal_item_hash

SAMPLES = Path(__file__).parent / "results" / "signals"


def scores_path(dataset: str, split: str, label: str) -> Path:
    return SAMPLES / f"{dataset.replace(':', '_')}-{split}.reward-{label}.jsonl"


def stored(path: Path, stamp: str) -> set[str]:
    """Ids already scored by this model (``stamp``): what a rerun skips."""
    if not path.exists():
        return set()
    return {record["id"] for record in map(json.loads, path.read_text().splitlines()) if record["model"] == stamp}


async def score_item(reward: RewardScorers, item: dict) -> dict:
    """One item's samples: the outcome score and the step scores, in sample order."""
    outcome, steps = [], []
    for sample in item["samples"]:
        outcome.append(await reward.outcome(item["question"], sample["text"]))
        steps.append(await reward.steps(item["question"], sample["text"]))
    return {"id": item["id"], "orm": outcome, "prm_steps": steps}


async def score_file(reward: RewardScorers, stamp: str, label: str, dataset: str, split: str, concurrency: int) -> None:
    """Score every item of one signal file not yet scored by this model (refusing trained items)."""
    source = SAMPLES / f"{dataset.replace(':', '_')}-{split}.jsonl"
    items = [json.loads(line) for line in source.read_text().splitlines()]
    trained = set(reward.meta["item_hashes"])
    seen = [item["id"] for item in items if signal_item_hash(item) in trained]
    if seen:
        raise SystemExit(f"{source}: the reward model was trained on {len(seen)} of these items (e.g. {seen[0]})")
    out = scores_path(dataset, split, label)
    done = stored(out, stamp)
    todo = [item for item in items if item["id"] not in done]
    print(f"{dataset} {split}: {len(done)} items scored, {len(todo)} to score", flush=True)
    started = time.monotonic()

    async def work(item: dict) -> dict:
        return {**await score_item(reward, item), "model": stamp}

    await append_each(todo, work, out, concurrency)
    samples, seconds = sum(len(item["samples"]) for item in todo), time.monotonic() - started
    print(f"  {samples} samples scored twice in {seconds:.0f} s ({seconds / max(samples, 1):.3f} s a sample)")


async def run(args: argparse.Namespace) -> None:
    async with reward_scorers(args.model) as reward:
        stamp = f"{await anyio.Path(args.model).resolve()}@{reward.meta['trained_at']}"
        for dataset in args.datasets:
            await score_file(reward, stamp, args.label or args.model.name, dataset, args.split, args.concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the reward model directory")
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--label", help="the name signals.py knows the scores by (default: the directory's name)")
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()

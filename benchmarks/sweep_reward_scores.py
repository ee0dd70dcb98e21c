"""Score a stored sweep's best-of-N samples with trained reward models, for the router's replay.

``ttc fit-router --verifier orm --scores FILE`` replays rules that accept a sample the reward
model scores high; the replay cannot run the model, so its scores are made here once, on the
pooling engine the service uses. Each item is scored by a model that never saw it (by content
hash): give two models trained on complementary halves of the dev items (``--fold``) and the dev
sweep is scored out of sample — cross-fitted, so the fit does not pick thresholds on scores the
model memorised. An item no given model may score is refused.

    .venv/bin/python benchmarks/sweep_reward_scores.py docs/sweep/gsm8k/dev/sweep.json.gz \\
        runs/orm-fold0 runs/orm-fold1 --out runs/scores/gsm8k-dev.orm.json
"""

from __future__ import annotations

import argparse
import json
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
from embedded import RewardScorers, append_each, reward_scorers, stored_ids  # benchmarks/ is the script's directory

from harness.catalog import load_dataset
from harness.replay import first_passes, sample_key
from harness.run import read_sweep_dump


def scorer_for(problem_hash: str, models: list[RewardScorers]) -> RewardScorers:
    """The first model that did not train on the item."""
    for model in models:
        if problem_hash not in model.meta["item_hashes"]:
            return model
    raise SystemExit("every given reward model was trained on one of this sweep's items: give one that was not")


async def run(args: argparse.Namespace) -> None:

    dump = read_sweep_dump(args.dump)
    spec = dump["spec"]
    problems = {p.id: p for p in load_dataset(spec["dataset"], spec["split"], spec["limit"], spec.get("data_seed", 0))}
    texts = {item: [sample.text for sample in p.samples] for item, p in first_passes(dump["passes"]).items()}
    out_lines = args.out.with_suffix(".jsonl")  # one line per item as it lands: resumable
    done = stored_ids(out_lines)
    async with AsyncExitStack() as stack:
        models = [await stack.enter_async_context(reward_scorers(directory)) for directory in args.models]
        todo = [item for item in texts if item in problems and item not in done]
        print(f"{len(done)} items scored, {len(todo)} to score", flush=True)

        async def work(item_id: str) -> dict:
            problem = problems[item_id]
            model = scorer_for(problem.content_hash, models)
            scores = {}
            for text in texts[item_id]:
                scores[sample_key(problem.question, text)] = await model.outcome(problem.question, text)
            return {"id": item_id, "scores": scores}

        args.out.parent.mkdir(parents=True, exist_ok=True)
        await append_each(todo, work, out_lines, args.concurrency)
    table: dict[str, float] = {}
    for line in out_lines.read_text().splitlines():
        table |= json.loads(line)["scores"]
    models_used = [str(path) for path in args.models]
    args.out.write_text(
        json.dumps({"verifier": "orm", "sweep": dump.get("sweep"), "models": models_used, "scores": table})
    )
    print(f"saved {len(table)} scores to {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path, help="a sweep dump (ttc sweep-dump)")
    parser.add_argument("models", type=Path, nargs="+", help="reward model directories")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()

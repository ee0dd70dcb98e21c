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
from pathlib import Path

import anyio
from embedded import append_each  # benchmarks/ is the script's directory

from harness.catalog import load_dataset
from harness.reward_data import outcome_steps
from harness.run import read_sweep_dump
from orchestrator.core.backends.pooling import InProcessPooler
from verifiers.prm import format_prm_input, step_probabilities
from verifiers.reward import load_reward_meta


def samples_by_item(dump: dict) -> dict[str, list[str]]:
    """Each item's stored sample texts (its first pass)."""
    found: dict[str, list[str]] = {}
    for key, raw in sorted(dump["passes"].items()):
        found.setdefault(key.rsplit("|", 2)[0], [sample["text"] for sample in json.loads(raw)["samples"]])
    return found


def scorer_for(problem_hash: str, models: list[tuple[dict, InProcessPooler]]) -> tuple[dict, InProcessPooler]:
    for meta, pooler in models:
        if problem_hash not in meta["item_hashes"]:
            return meta, pooler
    raise SystemExit("every given reward model was trained on one of this sweep's items: give one that was not")


async def run(args: argparse.Namespace) -> None:
    from harness.replay import sample_key

    dump = read_sweep_dump(args.dump)
    spec = dump["spec"]
    problems = {p.id: p for p in load_dataset(spec["dataset"], spec["split"], spec["limit"], spec.get("data_seed", 0))}
    texts = samples_by_item(dump)
    out_lines = args.out.with_suffix(".jsonl")  # one line per item as it lands: resumable
    done = {json.loads(line)["id"] for line in out_lines.read_text().splitlines()} if out_lines.exists() else set()
    models = []
    for directory in args.models:
        meta = load_reward_meta(directory)
        models.append((meta, await InProcessPooler.start(directory.resolve(), int(meta["step_tag_id"]))))
    try:
        todo = [item for item in texts if item in problems and item not in done]
        print(f"{len(done)} items scored, {len(todo)} to score", flush=True)

        async def work(item_id: str) -> dict:
            problem = problems[item_id]
            meta, pooler = scorer_for(problem.content_hash, models)
            scores = {}
            for text in texts[item_id]:
                prompt = format_prm_input(problem.question, outcome_steps(text), meta["step_tag"], system=None)
                scores[sample_key(problem.question, text)] = step_probabilities(await pooler.tag_rows(prompt))[-1]
            return {"id": item_id, "scores": scores}

        args.out.parent.mkdir(parents=True, exist_ok=True)
        await append_each(todo, work, out_lines, args.concurrency)
    finally:
        for _, pooler in models:
            await pooler.aclose()
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

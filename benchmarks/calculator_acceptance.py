"""How good an acceptor the calculator is on stored samples: does "sample until one checks" have a verifier?

For each committed sweep dump (``docs/sweep/<dataset>/<split>/sweep.json.gz``) this scores every
stored sample again with ``arith_checked`` (the calculator's verdict on the whole sample: its
answer is the result of an equation and every equation holds) and reports the share of samples
that are right, the share the calculator accepts, and how many of those are right (its
precision), with Wilson intervals. An acceptor helps only where its precision is well above the
samples' own accuracy and it accepts many of them. (Samples of one item are not independent, so
the intervals are narrower than an item-level resample would give.)

    .venv/bin/python benchmarks/calculator_acceptance.py arithmetic
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from harness.catalog import load_dataset
from harness.replay import rescorer, stored_items
from harness.report import wilson_interval

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sweep"
RESULTS = Path(__file__).parent / "results"


def share(hits: int, total: int) -> dict:
    low, high = wilson_interval(hits, total)
    return {"share": hits / total if total else None, "ci95": [low, high], "of": total}


def measure(dataset: str, split: str) -> dict:
    dumped = json.loads(gzip.decompress((DOCS / dataset / split / "sweep.json.gz").read_bytes()))
    spec = dumped["spec"]
    problems = load_dataset(spec["dataset"], split, spec["limit"], spec.get("data_seed", 0))
    items = stored_items(problems, dumped["passes"], rescorer("arith_checked"))
    samples = [
        (answer in item.right, score) for item in items for answer, score in zip(item.answers, item.scores, strict=True)
    ]
    accepted = [right for right, score in samples if score is not None and score >= 0.9]
    return {
        "items": len(items),
        "samples_right": share(sum(right for right, _ in samples), len(samples)),
        "accepted": share(len(accepted), len(samples)),
        "accepted_right": share(sum(accepted), len(accepted)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    args = parser.parse_args()
    report = {
        "command": f"python benchmarks/calculator_acceptance.py {args.dataset}",
        **{split: measure(args.dataset, split) for split in ("dev", "test")},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"calculator_acceptance-{args.dataset}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))

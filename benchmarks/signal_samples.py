"""Draw and keep the samples every signal is measured on: N samples per item with their tokens'
top-5 logprobs, graded against the item's gold answer.

For each item: one batched request of N samples (temperature 0.7, up to 192 tokens). Each sample
is kept with its answer, whether it is correct, its confidence measures, its per-token confidence
series (to replay DeepConf online offline), and the calculator's score (its last step's). Items are written one
JSON line each to ``benchmarks/results/signals/<dataset>-<split>.jsonl``. A rerun skips the items
already there, so an interrupted run resumes.

    .venv/bin/python benchmarks/signal_samples.py arithmetic --split test --items 150
    .venv/bin/python benchmarks/signal_samples.py gym:chain_sum --split dev --items 150

A sweep's stored best-of-N passes (``ttc sweep-dump``) carry the same samples but for the per-token
series: ``--from-sweep FILE`` writes them in this format, graded, without decoding again (DeepConf
online cannot be replayed on them).

    .venv/bin/python benchmarks/signal_samples.py --from-sweep docs/sweep/gsm8k/test/sweep.json.gz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anyio
from embedded import Engine, append_each, embedded_engine, stored_ids  # benchmarks/ is the script's directory

from harness.catalog import load_dataset
from harness.datasets import Problem
from harness.grading import is_correct
from harness.run import read_sweep_dump
from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.budget import Budget
from orchestrator.core.verification import ScoreRequest
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from strategies.selection import answer_of, split_steps
from verifiers.confidence import token_confidence, trace_confidence

OUT_DIR = Path(__file__).parent / "results" / "signals"
TOP_K = 5
SAMPLING = {"temperature": 0.7, "max_tokens": 192, "logprobs": TOP_K}


def path_for(dataset: str, split: str) -> Path:
    return OUT_DIR / f"{dataset.replace(':', '_')}-{split}.jsonl"


async def sample_item(engine: Engine, problem: Problem, n: int) -> dict:
    """N graded samples of one item, with every signal the analysis reads."""
    session = engine.session(Budget())
    prompt = session.renderer.render_question(problem.question, system=DEFAULT_SYSTEM_PROMPT)
    [result] = await session.generate([prompt], SamplingSettings(n=n, **SAMPLING))
    completions = result.completions
    batch = [ScoreRequest(problem.question, split_steps(c.text), c.logprobs) for c in completions]
    calculator = await session.score(session.verifier("arith_steps"), batch)
    vocab = int(session.renderer.tokenizer.vocab_size)
    samples = []
    for completion, calc in zip(completions, calculator, strict=True):
        answer = answer_of(completion.text)
        logprobs = completion.logprobs or ()
        samples.append(
            {
                "text": completion.text,
                "answer": answer,
                "correct": is_correct(problem, answer, completion.text),
                "tokens": len(completion.token_ids),
                "finish": completion.finish_reason,
                "calculator": calc,
                "confidence": trace_confidence(logprobs, k=TOP_K, vocab_size=vocab),
                "token_confidence": [round(token_confidence(p, TOP_K), 3) for p in logprobs],
            }
        )
    usage = session.meter.snapshot()
    return {
        "id": problem.id,
        "question": problem.question,
        "gold": problem.answer,
        "prompt_tokens": usage.prompt_tokens,
        "samples": samples,
    }


async def run(args: argparse.Namespace) -> None:
    problems = load_dataset(args.dataset, args.split, args.items, args.seed)
    out = path_for(args.dataset, args.split)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = stored_ids(out)
    todo = [p for p in problems if p.id not in done]
    print(f"{args.dataset} {args.split}: {len(done)} items stored, {len(todo)} to sample", flush=True)
    async with embedded_engine() as engine:
        await append_each(todo, lambda problem: sample_item(engine, problem, args.n), out, args.concurrency)
    print(f"done: {out}", flush=True)


def from_sweep(dump: Path) -> Path:
    """Write a sweep dump's best-of-N samples (the first seed's) as signal samples; the file written."""
    stored = read_sweep_dump(dump)
    spec = stored["spec"]
    problems = {p.id: p for p in load_dataset(spec["dataset"], spec["split"], spec["limit"], spec["data_seed"])}
    out = path_for(spec["dataset"], spec["split"])
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for key, raw in sorted(stored["passes"].items()):
        item_id, _digest, seed = key.rsplit("|", 2)
        if seed != "0" or item_id not in problems:
            continue
        problem, sample_pass = problems[item_id], json.loads(raw)
        samples = [
            {
                "text": sample["text"],
                "answer": sample["answer"],
                "correct": is_correct(problem, sample["answer"], sample["text"]),
                "tokens": sample["tokens"],
                "finish": "length" if sample.get("cut_off") else "stop",
                "calculator": sample["score"],
                "confidence": sample["confidence"],
            }
            for sample in sample_pass["samples"]
        ]
        record = {"id": item_id, "question": problem.question, "gold": problem.answer, "samples": samples}
        lines.append(json.dumps(record | {"prompt_tokens": sample_pass["usage"]["prompt_tokens"]}))
    out.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} items of sweep {stored['sweep']!r} written to {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-sweep", type=Path, help="write a sweep dump's samples instead of sampling")
    parser.add_argument("dataset", nargs="?")
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--items", type=int, default=150)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if args.from_sweep:
        from_sweep(args.from_sweep)
    elif args.dataset:
        anyio.run(run, args)
    else:
        parser.error("name a dataset to sample, or --from-sweep FILE")


if __name__ == "__main__":
    main()

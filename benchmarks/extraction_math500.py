"""What the answer extraction change does on MATH-500: the same stored samples read both ways.

Draws 8 samples (temperature 0.7) for each of the first ``--items`` MATH-500 test questions,
storing their texts (resumable), then reads every sample with the previous extraction (kept
below verbatim, for this comparison only) and with ``verifiers.extraction``. Reported: how
many extracted answers changed, per-sample and majority-vote accuracy either way, and the
distinct answers per item (equal values written differently now vote together), each with a
paired 95% bootstrap interval on new − old.

    .venv/bin/python benchmarks/extraction_math500.py --items 100
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import Counter
from pathlib import Path

import anyio
from embedded import Engine, append_each, embedded_engine, stored_ids  # benchmarks/ is the script's directory

from harness.catalog import load_dataset
from harness.datasets import Problem
from harness.efficiency import paired_difference
from harness.grading import is_correct
from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.budget import Budget
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from verifiers.extraction import extract_answer

RESULTS = Path(__file__).parent / "results"
SAMPLES = RESULTS / "extraction_math500-samples.jsonl"
SAMPLING = SamplingSettings(n=8, temperature=0.7, max_tokens=384)

# --- the previous extraction, verbatim (only for this comparison) -----------------------------------
_OLD_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_OLD_ANSWER_IS = re.compile(r"answer is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.\s|\.$|$|\n)", re.IGNORECASE)
_OLD_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def previous_extract_answer(text: str) -> str | None:
    if boxed := _OLD_BOXED.findall(text):
        return boxed[-1].strip()
    if stated := _OLD_ANSWER_IS.findall(text):
        phrase = stated[-1].strip().rstrip(".")
        numbers_in_phrase = _OLD_NUMBER.findall(phrase)
        return _old_normalise(numbers_in_phrase[-1] if numbers_in_phrase else phrase)
    if numbers := _OLD_NUMBER.findall(text):
        return _old_normalise(numbers[-1])
    return None


def _old_normalise(text: str) -> str:
    candidate = text.replace(",", "")
    if _OLD_NUMBER.fullmatch(candidate):
        number = float(candidate)
        return str(int(number)) if number.is_integer() else candidate
    return text


# -----------------------------------------------------------------------------------------------------


async def draw(engine: Engine, problem: Problem) -> dict:
    session = engine.session(Budget())
    prompt = session.renderer.render_question(problem.question, system=DEFAULT_SYSTEM_PROMPT)
    [result] = await session.generate([prompt], SAMPLING)
    return {"id": problem.id, "texts": [completion.text for completion in result.completions]}


def read_item(problem: Problem, texts: list[str], extract) -> dict[str, float]:
    answers = [extract(text) for text in texts]
    votes = Counter(answer for answer in answers if answer is not None)
    leader = votes.most_common(1)[0][0] if votes else None
    return {
        "share_correct": statistics.fmean(is_correct(problem, a, t) for a, t in zip(answers, texts, strict=True)),
        "majority_correct": float(leader is not None and is_correct(problem, leader, None)),
        "distinct_answers": float(len(votes)),
    }


def paired(old: list[float], new: list[float]) -> dict:
    """Both means and new − old with its 95% paired bootstrap interval."""
    return {"previous": statistics.fmean(old), "now": statistics.fmean(new), **paired_difference(old, new)}


async def main(args: argparse.Namespace) -> dict:
    problems = load_dataset("math500", "test", args.items, 0)
    RESULTS.mkdir(exist_ok=True)
    todo = [p for p in problems if p.id not in stored_ids(SAMPLES)]
    if todo:
        async with embedded_engine() as engine:
            await append_each(todo, lambda problem: draw(engine, problem), SAMPLES, args.concurrency)
    texts = {row["id"]: row["texts"] for row in map(json.loads, SAMPLES.read_text().splitlines())}
    rows, changed = [], []
    for problem in problems:
        old = read_item(problem, texts[problem.id], previous_extract_answer)
        new = read_item(problem, texts[problem.id], extract_answer)
        rows.append((old, new))
        for text in texts[problem.id]:
            before, after = previous_extract_answer(text), extract_answer(text)
            if before != after:
                changed.append({"id": problem.id, "gold": problem.answer, "previous": before, "now": after})
    samples = sum(len(texts[p.id]) for p in problems)
    report = {
        "benchmark": "extraction_math500",
        "command": f"python benchmarks/extraction_math500.py --items {args.items}",
        "items": len(problems),
        "samples": samples,
        "answers_changed": len(changed),
        "answers_changed_share": len(changed) / samples,
        **{
            measure: paired([old[measure] for old, _ in rows], [new[measure] for _, new in rows])
            for measure in ("share_correct", "majority_correct", "distinct_answers")
        },
        "examples": changed[:25],
    }
    (RESULTS / "extraction_math500.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "examples"}, indent=2))
    return report


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    anyio.run(main, parser.parse_args())

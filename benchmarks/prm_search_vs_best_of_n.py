"""PRM-guided beam search and DVTS against best-of-N at matched tokens, per difficulty bin.

Snell et al.'s comparison on this model. Best-of-N comes from the stored signal samples (16 per
test item, ``benchmarks/signal_samples.py``): the first k give majority@k and the vote weighted by
an outcome reward model's scores (``benchmarks/signal_reward.py``, named by ``--orm``), at those
samples' completion tokens. Beam search and DVTS run on the same items, online, with the ``prm``
verifier of the reward model in ``TTC_REWARD__MODEL`` as the step scorer, each under a budget of k
times the mean stored sample's completion tokens. The budget counts compute tokens (uncached prompt
as well as completion), so a search never decodes more than best-of-N's k samples did. The searches
sample as the stored samples were drawn (the same system prompt, temperature 0.7), and their depth
(``--max-steps``, 12 by default) lets a solution run to its end: this model's GSM8K solutions have
6 steps (blank-line separated) at the median and 9 at the 90th percentile, so 5 steps cut most of
them short. (A first run with 5 steps, and with beam search still stopping at its first `width`
finished leaves instead of N, scored 0.05 at k = 4; its rows are kept in ``...-s5x96.jsonl``.)

Items fall into difficulty bins by how many of their last 8 stored samples are right (the oracle
difficulty Snell et al. bin by): hard 0, medium 1-2, easy 3 or more. Best-of-N reads only the
first 8 (so k is at most 8): binned on the samples it votes with, its accuracy on the hard bin
would be 0 by construction. Per bin and overall the
report gives each method's accuracy and tokens at each k, and each search's accuracy minus
majority@k with a paired bootstrap interval over the bin's items. Items the reward model was
trained on are refused (by content hash).

Resumable: each (item, method, k) row lands in ``results/<stem>.jsonl`` as soon as a batch has run;
a rerun skips what is there, and ``--report`` rebuilds the tables and the plot with no engine.

    TTC_REWARD__MODEL=runs/prm1 .venv/bin/python benchmarks/prm_search_vs_best_of_n.py \\
        --dataset gsm8k --items 40 --budgets 4 8 --orm orm1-all
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import anyio
from jsonl import read_rows  # benchmarks/ is the script's directory
from signals import load, vote

from harness.efficiency import paired_difference
from harness.reward_data import signal_item_hash
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from verifiers.outcome import answers_match

RESULTS_DIR = Path(__file__).parent / "results"
SEARCHES = ("beam_search", "dvts")
BINS = {"hard": (0, 0), "medium": (1, 2), "easy": (3, 8)}  # right samples of the last 8, inclusive
VOTED = 8  # best-of-N votes with the first 8 samples, difficulty is judged on the rest


def search_shape(method: str, k: int) -> dict[str, int]:
    """N = k one-step children per depth: beam search keeps k/4 beams of 4 children (Snell's
    beam width 4); DVTS splits them into at least two subtrees, so at k = 4 it differs from beam."""
    width = max(1, k // 4) if method == "beam_search" else max(2, k // 4)
    return {"width": width, "samples_per_beam": k // width}


def difficulty(item: dict) -> str:
    right = sum(sample["correct"] for sample in item["samples"][VOTED:])
    return next(name for name, (low, high) in BINS.items() if low <= right <= high)


def best_of_n_rows(items: list[dict], k: int, orm: str) -> list[dict]:
    """Majority@k and ORM-weighted@k on the first k stored samples of each item."""
    rows = []
    for item in items:
        first = item["samples"][:k]
        tokens = sum(sample["tokens"] for sample in first)
        picks = {"majority": vote(first), "orm_weighted": vote(first, lambda s: s["reward"][f"{orm}:orm"])}
        for method, answer in picks.items():
            rows.append(
                {
                    "id": item["id"],
                    "method": method,
                    "k": k,
                    "correct": answers_match(answer, item["gold"]),
                    "completion_tokens": tokens,
                    "compute_tokens": None,
                }
            )
    return rows


def refuse_trained_items(items: list[dict]) -> None:
    from verifiers.reward import load_reward_meta

    directory = os.environ.get("TTC_REWARD__MODEL")
    if not directory:
        raise SystemExit("set TTC_REWARD__MODEL to the process reward model's directory (e.g. runs/prm1)")
    trained = set(load_reward_meta(Path(directory))["item_hashes"])
    seen = [item["id"] for item in items if signal_item_hash(item) in trained]
    if seen:
        raise SystemExit(f"the reward model was trained on {len(seen)} of these items (e.g. {seen[0]})")


async def run_searches(
    items: list[dict], args: argparse.Namespace, budget_per_sample: float, out: Path, done: set[tuple]
) -> None:
    """Every (item, search, k) not yet in ``out``: a batch of items at once under one search, then
    under the other (order alternating), so both see the same load."""
    from embedded import embedded_engine

    from orchestrator.core.budget import Budget
    from strategies import get_strategy

    step = {"verifier": "prm", "max_steps": args.max_steps, "step_max_tokens": args.step_tokens}
    step |= {"temperature": 0.7, "system_prompt": DEFAULT_SYSTEM_PROMPT}  # as the stored samples were drawn
    async with embedded_engine() as engine:

        async def solve(method: str, k: int, item: dict, rows: list[dict]) -> None:
            strategy = get_strategy(method)
            session = engine.session(Budget(max_tokens=int(k * budget_per_sample), deadline_s=600))
            result = await strategy.run(
                item["question"], session, strategy.parse_params(step | search_shape(method, k))
            )
            usage = session.meter.snapshot()
            rows.append(
                {
                    "id": item["id"],
                    "method": method,
                    "k": k,
                    "correct": answers_match(result.answer, item["gold"]),
                    "answer": result.answer,
                    "completion_tokens": usage.completion_tokens,
                    "compute_tokens": usage.compute_tokens,
                    "reward_model": os.environ["TTC_REWARD__MODEL"],
                }
            )

        turn = 0
        for k in args.budgets:
            todo = [item for item in items if any((item["id"], m, k) not in done for m in SEARCHES)]
            for start in range(0, len(todo), args.batch):
                batch, turn = todo[start : start + args.batch], turn + 1
                for method in SEARCHES if turn % 2 else reversed(SEARCHES):
                    rows: list[dict] = []
                    began = time.perf_counter()
                    async with anyio.create_task_group() as group:
                        for item in batch:
                            if (item["id"], method, k) not in done:
                                group.start_soon(solve, method, k, item, rows)
                    for row in rows:
                        row["seconds"] = (time.perf_counter() - began) / len(rows)  # the batch's wall time, shared
                    with out.open("a") as file:
                        file.writelines(json.dumps(row) + "\n" for row in rows)
                    right = sum(row["correct"] for row in rows)
                    print(
                        f"k={k} items {start + 1}-{start + len(batch)}/{len(todo)} {method}: {right} right", flush=True
                    )


def summarise(rows: list[dict], ids: set[str], budgets: list[int]) -> dict:
    """Per method and k on the items ``ids``: accuracy, mean tokens; each search against majority@k."""
    table: dict[str, dict] = {}
    for k in budgets:
        at_k = {
            m: {r["id"]: r for r in rows if r["k"] == k and r["method"] == m and r["id"] in ids}
            for m in ("majority", "orm_weighted", *SEARCHES)
        }
        for method, found in at_k.items():
            if len(found) < len(ids):
                continue  # not run on every item yet
            entry = {
                "accuracy": statistics.mean(r["correct"] for r in found.values()),
                "completion_tokens": statistics.mean(r["completion_tokens"] for r in found.values()),
            }
            if method != "majority":
                ids_in_order = sorted(found)
                versus = paired_difference(
                    [at_k["majority"][i]["correct"] for i in ids_in_order], [found[i]["correct"] for i in ids_in_order]
                )
                entry["minus_majority"], entry["minus_majority_ci95"] = versus["difference"], versus["ci95"]
            if method in SEARCHES:
                entry["compute_tokens"] = statistics.mean(r["compute_tokens"] for r in found.values())
            table.setdefault(method, {})[str(k)] = entry
    return table


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = list(report["bins"])
    figure, axes = plt.subplots(1, len(bins), figsize=(4.2 * len(bins), 3.8), sharey=True)
    for axis, name in zip(axes, bins, strict=True):
        for method, by_k in report["bins"][name]["methods"].items():
            ks = sorted(by_k, key=int)
            axis.plot(
                [by_k[k]["completion_tokens"] for k in ks], [by_k[k]["accuracy"] for k in ks], marker="o", label=method
            )
        axis.set(xscale="log", xlabel="completion tokens per item", title=f"{name} ({report['bins'][name]['items']})")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def report(items: list[dict], rows: list[dict], args: argparse.Namespace, budget_per_sample: float) -> dict:
    bins = {"all": {item["id"] for item in items}}
    bins |= {name: {item["id"] for item in items if difficulty(item) == name} for name in BINS}
    return {
        "benchmark": "prm_search_vs_best_of_n",
        "command": "python benchmarks/prm_search_vs_best_of_n.py " + " ".join(sys.argv[1:]),
        "dataset": args.dataset,
        "reward_model": sorted({row["reward_model"] for row in rows if "reward_model" in row}),
        "orm": args.orm,
        "budget_per_sample_tokens": budget_per_sample,
        "search": {
            "max_steps": args.max_steps,
            "step_max_tokens": args.step_tokens,
            "shapes": {m: {str(k): search_shape(m, k) for k in args.budgets} for m in SEARCHES},
        },
        "bins": {
            name: {"items": len(ids), "methods": summarise(rows, ids, args.budgets)}
            for name, ids in bins.items()
            if ids
        },
    }


def print_table(result: dict) -> None:
    for name, found in result["bins"].items():
        print(f"\n{name} ({found['items']} items)")
        for method, by_k in found["methods"].items():
            for k, entry in by_k.items():
                gap = entry.get("minus_majority_ci95")
                versus = f"  vs majority {entry['minus_majority']:+.3f} ({gap[0]:+.3f} to {gap[1]:+.3f})" if gap else ""
                print(
                    f"  {method:>12} k={k:>2}: {entry['accuracy']:.3f} @ {entry['completion_tokens']:.0f} tok{versus}"
                )


def main(args: argparse.Namespace) -> None:
    if max(args.budgets) > VOTED:
        raise SystemExit(f"--budgets: at most {VOTED} (the later samples judge each item's difficulty)")
    items = load(args.dataset, "test", [args.orm])[: args.items]
    budget_per_sample = statistics.mean(sample["tokens"] for item in items for sample in item["samples"][:VOTED])
    stem = f"prm_search_vs_best_of_n-{args.dataset.replace(':', '_')}-s{args.max_steps}x{args.step_tokens}"
    rows_file = RESULTS_DIR / f"{stem}.jsonl"
    if not args.report:
        refuse_trained_items(items)
        done = {(row["id"], row["method"], row["k"]) for row in read_rows(rows_file)}
        anyio.run(run_searches, items, args, budget_per_sample, rows_file, done)
    rows = read_rows(rows_file)
    rows += [row for k in args.budgets for row in best_of_n_rows(items, k, args.orm)]
    result = report(items, rows, args, budget_per_sample)
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS_DIR / f"{stem}.png")
    print_table(result)
    print(f"saved {RESULTS_DIR / stem}.json and .png")


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--items", type=int, default=40, help="the first items of the stored test samples")
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=[4, 8], help="k (at most 8): samples' worth of tokens"
    )
    parser.add_argument("--orm", default="orm1-all", help="the reward-score label best-of-N is weighted by")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--step-tokens", type=int, default=96)
    parser.add_argument("--batch", type=int, default=4, help="items run at once (per search)")
    parser.add_argument("--report", action="store_true", help="recompute the tables from stored rows, no engine")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    main(parser.parse_args())

"""Does the replay tell the truth? ``auto`` run online against the same policy replayed on stored samples.

``ttc fit-router`` evaluates a policy by replaying it on the test sweep's stored samples.
This runs ``auto`` for real (through the sweep, on the engine, with its own fresh samples)
on the first K of those test items at a few budgets, and puts its accuracy, compute tokens
and samples drawn next to the replay's on the same items. Online draws different samples,
so the two agree only in distribution: the tokens and samples per item are the check.
Accuracy is paired by item: online − replay and online − majority on the stored samples at
the same budget, each with a 95% paired bootstrap interval, and the discordant items (right
one way, wrong the other) counted. A resumed run reuses the items already run online.

    .venv/bin/python benchmarks/auto_online_vs_replay.py q05-arithmetic-dev q05-gsm8k-dev \
        docs/sweep/mixed/policy.json --items 100 --budgets 1024
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import anyio

RESULTS = Path(__file__).parent / "results"


async def main(args: argparse.Namespace) -> dict:
    from harness.efficiency import accuracy_difference
    from harness.evaluation import rule_of
    from harness.replay import best_of_n_within, replay
    from harness.run import _stored_items, run_sweep
    from harness.sweep import SweepSpec
    from orchestrator.core.settings import Settings
    from strategies.policy import load_policy

    settings = Settings()
    policy = load_policy(args.policy)
    budgets = [int(b) for b in args.budgets.split(",")]
    online: dict[int, list] = {budget: [] for budget in budgets}
    items, datasets = [], []
    for dev_sweep in args.dev_sweeps:  # several: a mixed stream, each dataset's first K test items
        test_spec, test_items = await _stored_items(f"{dev_sweep}-test", settings, None)
        chosen = test_items[: args.items]
        spec = SweepSpec(
            name=f"{dev_sweep}-online-{re.sub(r'[^A-Za-z0-9_.:-]', '_', policy.version)}",
            dataset=test_spec.dataset,
            split="test",
            limit=len(chosen),  # the first K items of the same split and seed: the same questions
            data_seed=test_spec.data_seed,
            strategies=[{"strategy": "auto", "params": {"policy": policy.model_dump(mode="json")}}],
            budgets=budgets,
        )
        outcome = await run_sweep(spec, Path("runs") / spec.name, settings)
        for budget in budgets:
            by_item = {r.item_id: r for r in outcome.results if r.budget == budget}
            online[budget] += [by_item[item.id] for item in chosen]
        items += chosen
        datasets.append(test_spec.dataset)
    command = "python benchmarks/auto_online_vs_replay.py " + " ".join(sys.argv[1:])
    report: dict = {"command": command, "policy": policy.version, "datasets": datasets, "items": len(items)}
    report["budgets"] = {}
    typical = policy.sampling.typical_tokens
    for budget in budgets:
        ran = online[budget]
        # each item replayed with the rule of its own class, as online auto chose it by its prompt's length
        replayed = [replay(rule_of(policy, item, budget), item, budget, typical) for item in items]
        majority = [best_of_n_within(item, budget) for item in items]
        pairs = list(zip(ran, replayed, strict=True))
        report["budgets"][str(budget)] = {
            "online": {
                "accuracy": statistics.fmean(r.correct for r in ran),
                "tokens": statistics.fmean(r.compute_tokens for r in ran),
            },
            "replay": {
                "accuracy": statistics.fmean(o.correct for o in replayed),
                "tokens": statistics.fmean(o.tokens for o in replayed),
                "samples": statistics.fmean(o.samples for o in replayed),
            },
            "stored_majority_accuracy": statistics.fmean(o.correct for o in majority),
            "online_minus_replay": accuracy_difference(ran, replayed),
            "online_minus_stored_majority": accuracy_difference(ran, majority),
            "discordant_online_right_replay_wrong": sum(a.correct > b.correct for a, b in pairs),
            "discordant_replay_right_online_wrong": sum(a.correct < b.correct for a, b in pairs),
        }
    slug = "+".join(datasets).replace(":", "_")
    path = RESULTS / f"auto_online_vs_replay-{slug}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dev_sweeps", nargs="+", help="the dev sweeps the policy was fitted on (their -test sweeps)")
    parser.add_argument("policy", help="the fitted policy file")
    parser.add_argument("--items", type=int, default=40, help="test items of each dev sweep's test split")
    parser.add_argument("--budgets", default="512,1024")
    anyio.run(main, parser.parse_args())

"""A fitted policy on the test split: ``auto`` against best-of-N majority and the best fixed selection rule.

Everything is replayed on the test sweep's stored samples (``harness.replay``), so ``auto``
and the baselines see the very same samples. Per budget: accuracy and tokens of each,
the efficiency ratios with paired bootstrap intervals (``harness.efficiency``), and an
accuracy-vs-tokens plot per difficulty bin, the bin read from how much the first four
samples agree (nothing a question's gold answer tells).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.efficiency import accuracy_difference, compare
from harness.replay import Point, StoredItem, baseline_table, best_of_n_within, replay
from harness.report import concave_hull
from orchestrator.core.costmodel import ModelShape
from strategies.allocation import Allocation, Votes
from strategies.policy import Policy
from strategies.selection import Rule

SELECTIONS: tuple[Rule, ...] = ("majority", "weighted", "argmax")
BINS = {"agree (3-4 of 4)": (0.75, 1.01), "split (2 of 4)": (0.5, 0.75), "scattered (<2 of 4)": (0.0, 0.5)}


def best_fixed_rule(dev: Sequence[StoredItem], budgets: Sequence[int]) -> Rule:
    """The selection rule with the best mean dev accuracy over the budgets (chosen on dev, never on test)."""

    def mean_accuracy(selection: Rule) -> float:
        return statistics.fmean(best_of_n_within(item, b, selection).correct for b in budgets for item in dev)

    return max(SELECTIONS, key=mean_accuracy)


def difficulty_bin(item: StoredItem) -> str:
    """The bin of an item by its first four samples' agreement."""
    share = Votes.of(item.answers[:4]).share
    return next(name for name, (low, high) in BINS.items() if low <= share < high)


def evaluate_policy(
    policy: Policy,
    dev: Sequence[StoredItem],
    test: Sequence[StoredItem],
    budgets: Sequence[int],
    shape: ModelShape | None = None,
) -> dict[str, Any]:
    """Per budget: ``auto``, majority and the best fixed rule on the test items, with efficiency ratios
    (in tokens; with the model's ``shape``, every point carries its mean eFLOPs too)."""
    fixed = best_fixed_rule(dev, budgets)
    majority_curve, fixed_curve = baseline_table(test, "majority", budgets), baseline_table(test, fixed, budgets)
    typical = policy.sampling.typical_tokens
    rows: dict[str, Any] = {}
    for budget in sorted(budgets):
        auto = [replay(rule_of(policy, item, budget), item, budget, typical, shape) for item in test]
        majority = [best_of_n_within(item, budget, shape=shape) for item in test]
        best = [best_of_n_within(item, budget, fixed, shape) for item in test]
        versus_majority = compare(auto, majority_curve)
        rows[str(budget)] = {
            "auto": Point.of(auto).__dict__,
            "majority": Point.of(majority).__dict__,
            f"best_fixed ({fixed})": Point.of(best).__dict__,
            "efficiency_ratio": versus_majority["ratio"],
            "efficiency_ci": versus_majority["ci95"],
            "efficiency_note": versus_majority["note"],
            "vs_best_fixed": compare(auto, fixed_curve),
            "accuracy_minus_majority": accuracy_difference(auto, majority),
            "stops": _stop_reasons(auto),
        }
    size = min(item.size for item in test)
    return {
        "items": len(test),
        "best_fixed_rule": fixed,
        f"majority_at_{size}": statistics.fmean(majority_curve[0][:, size - 1]),
        "budgets": rows,
    }


def rule_of(policy: Policy, item: StoredItem, budget: int) -> Allocation:
    """The allocation ``auto`` would follow on this item at this budget (its class by prompt length)."""
    return policy.rule_for(budget, item.prompt_length).allocation


def _stop_reasons(outcomes: Sequence) -> dict[str, int]:
    """How often each kind of last decision ended sampling (the text before its colon)."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        last = outcome.reasons[-1].split(":")[0] if outcome.reasons else "none"
        counts[last] = counts.get(last, 0) + 1
    return counts


def plot(policy: Policy, test: Sequence[StoredItem], budgets: Sequence[int], path: Path, title: str) -> Path:
    """Accuracy vs tokens per difficulty bin: best-of-N majority over N (its concave hull dashed), and
    ``auto`` per budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {name: [item for item in test if difficulty_bin(item) == name] for name in BINS}
    groups = {"all items": list(test), **{name: items for name, items in groups.items() if items}}
    figure, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.8), squeeze=False)
    for axis, (name, items) in zip(axes[0], groups.items(), strict=True):
        correct, tokens = baseline_table(items, "majority", budgets)
        curve = sorted(zip(tokens.mean(axis=0), correct.mean(axis=0), strict=True))
        axis.plot(*zip(*curve, strict=True), marker=".", label="best-of-N majority (each N, each budget)")
        hull = concave_hull([(0.0, 0.0), *curve])
        axis.plot(*zip(*hull, strict=True), linestyle="--", color="grey", label="its concave hull (the baseline)")
        auto = [
            Point.of([replay(rule_of(policy, item, b), item, b, policy.sampling.typical_tokens) for item in items])
            for b in sorted(budgets)
        ]
        axis.plot([p.tokens for p in auto], [p.accuracy for p in auto], marker="o", label="auto, per budget")
        axis.set(title=f"{name} ({len(items)})", xlabel="mean compute tokens", ylabel="accuracy")
    axes[0][0].legend(fontsize=7)
    figure.suptitle(title)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def markdown(evaluation: dict[str, Any], dataset: str) -> str:
    """The evaluation as a Markdown section."""
    lines = [
        f"## `auto` on the {dataset} test split ({evaluation['items']} items, replayed)",
        "",
        "Efficiency ratio = compute tokens best-of-N needs to reach `auto`'s accuracy (on the upper concave hull "
        "of its points over every N and every budget: any mix of them) / tokens `auto` spent; 95% paired "
        "bootstrap intervals over items. "
        f"Best fixed rule (chosen on dev): `{evaluation['best_fixed_rule']}`.",
        "",
        "| budget | auto acc | auto tokens | majority acc | majority tokens | auto − majority (95%) "
        "| ratio vs majority | 95% interval | ratio vs best fixed | 95% interval |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for budget, row in evaluation["budgets"].items():
        fixed, gap = row["vs_best_fixed"], row["accuracy_minus_majority"]
        lines.append(
            f"| {budget} | {row['auto']['accuracy']:.3f} | {row['auto']['tokens']:.0f} | "
            f"{row['majority']['accuracy']:.3f} | {row['majority']['tokens']:.0f} | "
            f"{gap['difference']:+.3f} ({gap['ci95'][0]:+.3f} to {gap['ci95'][1]:+.3f}) | "
            f"{row['efficiency_ratio']:.2f}x ({row['efficiency_note']}) | "
            f"{row['efficiency_ci'][0]:.2f}–{row['efficiency_ci'][1]:.2f} | {fixed['ratio']:.2f}x | "
            f"{fixed['ci95'][0]:.2f}–{fixed['ci95'][1]:.2f} |"
        )
    rows = evaluation["budgets"]
    if all(row["auto"].get("eflops") is not None for row in rows.values()):
        lines += ["", "| budget | auto eFLOPs | majority eFLOPs | auto / majority |", "|---|---|---|---|"]
        for budget, row in rows.items():
            auto, majority = row["auto"]["eflops"], row["majority"]["eflops"]
            lines.append(f"| {budget} | {auto:.3g} | {majority:.3g} | {auto / majority:.2f} |")
    return "\n".join(lines) + "\n"

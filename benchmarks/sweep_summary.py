"""``docs/sweep/summary.json`` from the test evaluations ``ttc fit-router`` wrote under ``docs/sweep/``.

One entry per dataset (a directory with ``test/evaluation.json``): the model, the policy, and per
budget the efficiency ratio against best-of-N majority's concave hull with its 95% paired interval,
both sides' accuracy and tokens, and auto's accuracy less majority's with its interval.

    .venv/bin/python benchmarks/sweep_summary.py
"""

from __future__ import annotations

import json
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sweep"


def entry(evaluation: dict) -> dict:
    """The summary of one dataset's evaluation."""
    budgets = {}
    for budget, row in evaluation["budgets"].items():
        gap = row["accuracy_minus_majority"]
        budgets[budget] = {
            "efficiency_ratio": round(row["efficiency_ratio"], 3),
            "efficiency_ci": [round(x, 3) for x in row["efficiency_ci"]],
            "efficiency_note": row["efficiency_note"],
            "auto_accuracy": row["auto"]["accuracy"],
            "auto_tokens": round(row["auto"]["tokens"], 1),
            "majority_accuracy": row["majority"]["accuracy"],
            "majority_tokens": round(row["majority"]["tokens"], 1),
            "accuracy_minus_majority": round(gap["difference"], 3),
            "accuracy_minus_majority_ci": [round(x, 3) for x in gap["ci95"]],
            "ratio_vs_best_fixed": round(row["vs_best_fixed"]["ratio"], 3),
            "ratio_vs_best_fixed_ci": [round(x, 3) for x in row["vs_best_fixed"]["ci95"]],
        }
    majority_all = next(value for key, value in evaluation.items() if key.startswith("majority_at_"))
    return {
        "model": evaluation.get("model"),
        "test_items": evaluation["items"],
        "policy": evaluation["policy"],
        "best_fixed_rule": evaluation["best_fixed_rule"],
        "majority_at_all_samples": majority_all,
        "budgets": budgets,
    }


def main() -> dict:
    found = {
        path.parent.parent.name: entry(json.loads(path.read_text()))
        for path in sorted(DOCS.glob("*/test/evaluation.json"))
    }
    summary = {
        "made_by": "benchmarks/sweep_summary.py from docs/sweep/<dataset>/test/evaluation.json",
        "datasets": found,
    }
    (DOCS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    print(json.dumps(main(), indent=2)[:2000])

"""From a sweep's records: the summary table, accuracy-vs-compute plots, a Markdown report."""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.results import ProbeFeatures, SweepResult

ALL_BINS = "all"


class SummaryRow(BaseModel):
    """One strategy x budget x difficulty bin cell of the summary table."""

    strategy: str
    budget: int
    bin: str
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_tokens: float
    mean_flops: float
    mean_kv_tokens: float
    latency_p50_s: float
    latency_p95_s: float


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sane at 0, 1 and small n).

    Example: ``wilson_interval(5, 10)`` is about ``(0.237, 0.763)``.
    """
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))  # rounding never crosses p


def difficulty_bin(features: ProbeFeatures | None, edges: list[float]) -> str:
    """The probe bin of an item: ``"0"`` (easiest) to ``str(len(edges))``; ``"?"`` unprobed."""
    return "?" if features is None else str(bisect.bisect_right(edges, features.difficulty))


def summarise(results: list[SweepResult], probes: dict[str, ProbeFeatures], edges: list[float]) -> list[SummaryRow]:
    """Rows per strategy x budget, for all items and for each difficulty bin."""
    cells: dict[tuple[str, int, str], list[SweepResult]] = defaultdict(list)
    for result in results:
        cells[(result.strategy, result.budget, ALL_BINS)].append(result)
        cells[(result.strategy, result.budget, difficulty_bin(probes.get(result.item_id), edges))].append(result)
    return [_row(strategy, budget, bin_name, cell) for (strategy, budget, bin_name), cell in sorted(cells.items())]


def _row(strategy: str, budget: int, bin_name: str, cell: list[SweepResult]) -> SummaryRow:
    right = sum(r.correct for r in cell)
    low, high = wilson_interval(right, len(cell))
    latencies = sorted(r.latency_s for r in cell)
    return SummaryRow(
        strategy=strategy,
        budget=budget,
        bin=bin_name,
        n=len(cell),
        accuracy=right / len(cell),
        ci_low=low,
        ci_high=high,
        mean_tokens=statistics.fmean(r.compute_tokens for r in cell),
        mean_flops=statistics.fmean(r.flops for r in cell),
        mean_kv_tokens=statistics.fmean(r.kv_footprint_tokens for r in cell),
        latency_p50_s=_percentile(latencies, 0.50),
        latency_p95_s=_percentile(latencies, 0.95),
    )


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The compute-optimal frontier: points no cheaper point beats or equals in accuracy.

    Example: ``frontier([(1, .2), (2, .1), (3, .5)])`` is ``[(1, .2), (3, .5)]``.
    """
    best, kept = -1.0, []
    for cost, accuracy in sorted(points):
        if accuracy > best:
            kept.append((cost, accuracy))
            best = accuracy
    return kept


def concave_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The upper concave hull of the frontier: what mixing any two points buys.

    Answering a share of the questions with one configuration and the rest with another reaches
    every point on the straight line between them, so this is the fairest baseline a mix of
    configurations gives; where the frontier dips below it, a staircase or chord between
    neighbouring points would overstate the tokens the baseline needs.
    Example: ``concave_hull([(0, 0), (1, .5), (2, .55), (4, .9)])`` is ``[(0, 0), (1, .5), (4, .9)]``.
    """
    hull: list[tuple[float, float]] = []
    for point in frontier(points):
        while len(hull) >= 2 and _turns_up(hull[-2], hull[-1], point):
            hull.pop()  # hull[-1] lies on or below the chord from hull[-2] to this point
        hull.append(point)
    return hull


def _turns_up(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> bool:
    """Whether ``b`` is on or below the line from ``a`` to ``c`` (a non-concave bend at ``b``)."""
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) >= 0


def plot_accuracy(rows: list[SummaryRow], x: str, path: Path, title: str) -> Path:
    """Accuracy vs mean tokens (``x="mean_tokens"``) or FLOPs, a line per strategy, the concave hull of
    all points dashed (what mixing configurations reaches)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = [row for row in rows if row.bin == ALL_BINS]
    figure, axes = plt.subplots(figsize=(8, 5), dpi=110)
    by_strategy: dict[str, list[SummaryRow]] = defaultdict(list)
    for row in overall:
        by_strategy[row.strategy].append(row)
    for strategy, points in sorted(by_strategy.items()):
        points.sort(key=lambda row: getattr(row, x))
        xs = [getattr(row, x) for row in points]
        ys = [row.accuracy for row in points]
        errors = [[row.accuracy - row.ci_low for row in points], [row.ci_high - row.accuracy for row in points]]
        axes.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, alpha=0.85, label=_short(strategy))
    edge = concave_hull([(getattr(row, x), row.accuracy) for row in overall])
    if edge:  # held level to the most expensive point measured
        edge.append((max(getattr(row, x) for row in overall), edge[-1][1]))
        axes.plot(*zip(*edge, strict=True), color="black", linestyle="--", label="concave hull (mixing points)")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("mean compute tokens per question" if x == "mean_tokens" else "mean FLOPs per question")
    axes.set_ylabel("accuracy (95% CI)")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _short(label: str, width: int = 60) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def table_markdown(rows: list[SummaryRow], bins: bool = False) -> str:
    """The summary as a Markdown table (overall rows, or per-bin rows with ``bins``)."""
    chosen = [row for row in rows if (row.bin != ALL_BINS) == bins]
    lines = [
        "| strategy | budget | bin | n | accuracy (95% CI) | tokens | FLOPs | KV tokens | p50 s | p95 s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in chosen:
        lines.append(
            f"| `{row.strategy}` | {row.budget} | {row.bin} | {row.n} | "
            f"{row.accuracy:.2f} ({row.ci_low:.2f}–{row.ci_high:.2f}) | {row.mean_tokens:.0f} | "
            f"{row.mean_flops:.2e} | {row.mean_kv_tokens:.0f} | {row.latency_p50_s:.1f} | {row.latency_p95_s:.1f} |"
        )
    return "\n".join(lines)


def write_report(
    out_dir: Path,
    title: str,
    spec: dict[str, Any],
    results: list[SweepResult],
    probes: dict[str, ProbeFeatures],
    edges: list[float],
) -> Path:
    """``report.md`` with the plots (PNG, beside it) and tables; returns its path."""
    rows = summarise(results, probes, edges)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text("[\n" + ",\n".join(r.model_dump_json() for r in rows) + "\n]\n")
    plot_accuracy(rows, "mean_tokens", out_dir / "accuracy_vs_tokens.png", f"{title}: accuracy vs tokens")
    plot_accuracy(rows, "mean_flops", out_dir / "accuracy_vs_flops.png", f"{title}: accuracy vs FLOPs")
    items = len({r.item_id for r in results})
    sections = [
        f"# {title}",
        f"Dataset `{spec.get('dataset')}` ({spec.get('split')} split, {items} items, data seed "
        f"{spec.get('data_seed')}), budgets {spec.get('budgets')} compute tokens, {spec.get('seeds')} seed(s). "
        f"{len(results)} points. Difficulty bins come from each item's probe (a few short samples; difficulty "
        f"= 1 - (answer agreement + mean verifier score) / 2), edges {edges}.",
        "![accuracy vs tokens](accuracy_vs_tokens.png)",
        "![accuracy vs FLOPs](accuracy_vs_flops.png)",
        "## All items\n\n" + table_markdown(rows),
        "## By difficulty bin\n\n" + table_markdown(rows, bins=True),
    ]
    path = out_dir / "report.md"
    path.write_text("\n\n".join(sections) + "\n")
    return path

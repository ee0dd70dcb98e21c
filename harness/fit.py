"""``ttc fit-router``: the best configuration per difficulty bin and budget, from a dev sweep.

Snell et al.'s recipe with a predicted (not oracle) difficulty: items are binned by the
same probe ``auto`` runs online; in each bin, at each budget, the configuration with the
highest accuracy wins (fewer tokens break ties). The result is the versioned policy file
``auto`` loads. Evaluation on the test split compares ``auto`` with best-of-N majority
and reports the efficiency ratio: the tokens best-of-N needs to match ``auto``'s accuracy
divided by the tokens ``auto`` used.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections import defaultdict
from typing import Any

from pydantic import BaseModel

from harness.report import difficulty_bin, frontier
from harness.results import ProbeFeatures, SweepResult
from strategies.auto import ProbeParams, probe_shape
from strategies.policy import Policy, PolicyEntry


def quantile_edges(difficulties: list[float], bins: int) -> list[float]:
    """Edges that split the difficulties into ``bins`` groups of about equal size (deduplicated).

    Example: ``quantile_edges([0.1, 0.2, 0.3, 0.4], 2)`` is ``[0.3]``.
    """
    ordered = sorted(difficulties)
    if bins < 2 or not ordered:
        return []
    edges = {ordered[min(len(ordered) - 1, len(ordered) * k // bins)] for k in range(1, bins)}
    return sorted(edge for edge in edges if edge > ordered[0])


class Choice(BaseModel):
    """The winner of one bin at one budget, and how it did on the dev split."""

    strategy: str
    strategy_name: str
    params: dict[str, Any]
    accuracy: float
    mean_tokens: float
    items: int


def best_per_budget(results: list[SweepResult]) -> dict[int, Choice]:
    """At each budget, the configuration with the best accuracy (ties: fewer tokens)."""
    cells: dict[tuple[int, str], list[SweepResult]] = defaultdict(list)
    for result in results:
        if result.strategy_name not in ("auto", "probe"):
            cells[(result.budget, result.strategy)].append(result)
    best: dict[int, Choice] = {}
    for (budget, label), cell in sorted(cells.items()):
        choice = Choice(
            strategy=label,
            strategy_name=cell[0].strategy_name,
            params=_routable_params(cell),
            accuracy=statistics.fmean(r.correct for r in cell),
            mean_tokens=statistics.fmean(r.compute_tokens for r in cell),
            items=len(cell),
        )
        current = best.get(budget)
        if current is None or (choice.accuracy, -choice.mean_tokens) > (current.accuracy, -current.mean_tokens):
            best[budget] = choice
    return best


def _routable_params(cell: list[SweepResult]) -> dict[str, Any]:
    """Params to run the configuration with: a derived best-of-N point runs with its typical N."""
    params = dict(cell[0].params)
    if cell[0].derived:
        params["n"] = max(1, round(statistics.median(r.params.get("n", 1) for r in cell)))
    return params


def fit_policy(
    results: list[SweepResult],
    probes: dict[str, ProbeFeatures],
    bins: int = 3,
    version: str | None = None,
    source: str = "",
    probe: ProbeParams | None = None,
) -> Policy:
    """The policy: bin edges, and per bin the winner at each budget.

    ``auto`` chooses after paying for its probe (``probe``: the params the sweep probed with),
    so an entry's ``min_tokens`` is its budget minus what the probe typically costs at that
    budget (``probe_cost_online``), less a margin; entries that would share a threshold keep the
    smaller budget's winner. A bin with no dev items uses the overall winners.
    """
    probe = probe or ProbeParams()
    edges = quantile_edges([p.difficulty for p in probes.values()], bins)
    prompt = statistics.median(p.prompt_tokens for p in probes.values()) if probes else 0
    completion = statistics.median(p.compute_tokens - p.prompt_tokens for p in probes.values()) if probes else 0
    overall = best_per_budget(results)
    table: dict[str, list[PolicyEntry]] = {}
    fitted: dict[str, dict[str, Any]] = {}
    for bin_index in range(len(edges) + 1):
        in_bin = [r for r in results if difficulty_bin(probes.get(r.item_id), edges) == str(bin_index)]
        winners = best_per_budget(in_bin) or overall
        entries: dict[int, PolicyEntry] = {}
        for budget, choice in sorted(winners.items()):
            cost = probe_cost_online(budget, prompt, completion, probe)
            threshold = max(0, int(budget - cost - budget // 8))
            entry = PolicyEntry(
                min_tokens=threshold, strategy=choice.strategy_name, params=choice.params, budget=budget
            )
            entries.setdefault(threshold, entry)
        table[str(bin_index)] = list(entries.values())
        fitted[str(bin_index)] = {str(budget): c.model_dump() for budget, c in sorted(winners.items())}
    return Policy(
        version=version or time.strftime("%Y-%m-%d.%H%M%S") + (f".{source}" if source else ""),
        description=f"Fitted by ttc fit-router from sweep {source!r}: {len({r.item_id for r in results})} items, "
        f"{len(edges) + 1} probe-difficulty bins.",
        difficulty_bins=edges,
        table=table,
        fitted={"probe_prompt_tokens": prompt, "probe_completion_tokens": completion, "winners": fitted},
    )


def probe_cost_online(budget: int, prompt: float, completion: float, probe: ProbeParams) -> float:
    """What ``auto``'s probe typically spends under ``budget``: its prompt, plus its samples as
    ``probe_shape`` sizes them for the budget the prompt leaves (none when no probe fits).

    ``completion`` is what the probe's ``probe.probe_samples`` samples spent with no budget.
    Example: a 60-token prompt and 400 completion tokens at 4 x 160 cost 60 + 4 x 100 = 460
    under a large budget, and 60 + 2 x 64 = 188 under a budget of 316 (2 x 64 is all that fits).
    """
    shape = probe_shape(probe, int(budget - prompt))
    if shape is None:
        return 0.0
    samples, max_tokens = shape
    typical = completion / probe.probe_samples
    return prompt + samples * min(typical, max_tokens)


class Efficiency(BaseModel):
    """``auto`` against best-of-N majority at one budget."""

    budget: int
    auto_accuracy: float
    auto_tokens: float
    baseline_accuracy: float
    baseline_tokens: float
    baseline_tokens_to_match: float | None
    ratio: float | None
    note: str


def efficiency(
    auto_points: dict[int, tuple[float, float]], baseline_points: dict[int, tuple[float, float]]
) -> list[Efficiency]:
    """Per budget: (accuracy, mean tokens) of both, and tokens the baseline needs to match ``auto``.

    The baseline's curve is its frontier, interpolated linearly between measured points.
    Where it never reaches ``auto``'s accuracy the ratio is a lower bound (``note`` says so);
    where even its cheapest point reaches it, the ratio is an upper bound.
    """
    curve = frontier([(tokens, accuracy) for accuracy, tokens in baseline_points.values()])
    rows = []
    for budget, (accuracy, tokens) in sorted(auto_points.items()):
        needed, note = _tokens_to_reach(curve, accuracy)
        base_accuracy, base_tokens = baseline_points.get(budget, (float("nan"), float("nan")))
        rows.append(
            Efficiency(
                budget=budget,
                auto_accuracy=accuracy,
                auto_tokens=tokens,
                baseline_accuracy=base_accuracy,
                baseline_tokens=base_tokens,
                baseline_tokens_to_match=needed,
                ratio=needed / tokens if needed is not None and tokens > 0 else None,
                note=note,
            )
        )
    return rows


def _tokens_to_reach(curve: list[tuple[float, float]], accuracy: float) -> tuple[float | None, str]:
    if not curve:
        return None, "no baseline points"
    if curve[0][1] >= accuracy:
        return curve[0][0], "at most (the baseline's cheapest point already matches)"
    for (cost_a, acc_a), (cost_b, acc_b) in itertools.pairwise(curve):
        if acc_b >= accuracy:
            return cost_a + (cost_b - cost_a) * (accuracy - acc_a) / (acc_b - acc_a), "interpolated"
    return curve[-1][0], "at least (the baseline never matches within the sweep)"

"""Pure building blocks for REBASE and ETS tree search.

REBASE (Wu et al., 2024) gives each live node a share of the remaining width in proportion to
softmax(score / T). ETS (Hooper et al., 2025) first keeps, per depth, the leaves worth the KV memory
their paths hold and covering distinct ideas, by an integer program.

Nothing here talks to a model, an embedder or a store: scores, clusters and token counts come in as
plain values, so every function is deterministic and can be checked by hand or by brute force.

- ``rebase_allocation``: how many children each live node gets at one depth (REBASE).
- ``select_leaves``: the ETS integer program deciding which leaves survive, solved exactly with HiGHS.

The clusters of the coverage term come from ``verifiers.semantic.cluster_by_cosine``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

__all__ = ["EtsCandidate", "rebase_allocation", "select_leaves"]

# Relative tolerance used to snap a share that is an integer up to float noise (e.g. 2.0000000000000004)
# back to that integer, so ``ceil`` does not hand out a spurious extra child.
_SNAP_RTOL = 1e-9


def _ceil_share(share: float) -> int:
    """``ceil(share)``, except that a value within float noise of a positive integer is that integer."""
    nearest = round(share)
    if nearest >= 1 and abs(share - nearest) <= _SNAP_RTOL * nearest:
        return int(nearest)
    return math.ceil(share)


def rebase_allocation(scores: Sequence[float], width: int, temperature: float = 0.2) -> list[int]:
    """Split ``width`` children over candidates by REBASE's greedy softmax rule.

    Weights are ``w_i = exp(score_i / T)``. Candidates are visited in descending score order (ties keep
    their input order) and each gets ``n_i = ceil(W_rem * w_i / sum of the remaining w)``, capped at
    ``W_rem``; then ``W_rem -= n_i``. The result is in the ORIGINAL candidate order. When ``width >= 1``
    and there is at least one candidate the counts sum to ``width`` exactly (the last candidate with a
    non-zero weight absorbs the rest); low-scored candidates may get 0. ``width <= 0`` gives all zeros.

    Example:
        >>> rebase_allocation([0.0, 1.0], width=10, temperature=1.0)  # w = (1, e): ceil(10*e/(1+e)) = 8
        [2, 8]
    """
    if temperature <= 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    values = [float(s) for s in scores]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("scores must be finite")
    if not values:
        return []
    counts = [0] * len(values)
    if width <= 0:
        return counts

    # Subtracting the max keeps exp() in range; the common factor cancels in every ratio below.
    top = max(values)
    weights = [math.exp((v - top) / temperature) for v in values]
    # sorted() is stable, so equal scores are served in input order - deterministic for the caller.
    order = sorted(range(len(values)), key=lambda i: -values[i])
    # Suffix sums computed with fsum rather than by repeated subtraction, so the final "remaining
    # weight" equals the last candidate's weight exactly and it receives all of W_rem.
    ordered_weights = [weights[i] for i in order]
    remaining_sums = [math.fsum(ordered_weights[k:]) for k in range(len(order))]

    left = width
    for k, i in enumerate(order):
        if left <= 0:
            break
        total = remaining_sums[k]
        if total <= 0.0:  # every remaining weight underflowed to 0: REBASE's share is 0 for all of them
            break
        n = min(_ceil_share(left * weights[i] / total), left)
        counts[i] = n
        left -= n
    return counts


@dataclass(frozen=True)
class EtsCandidate:
    """One candidate leaf of the ETS program.

    ``leaf_weight`` is the REBASE outcome term O_i (any non-negative scale; ``select_leaves`` normalises
    it to sum 1). ``ancestors`` are the ids of the tree nodes that must stay in KV memory if this leaf is
    kept, excluding the shared prompt/root (it is always resident, so it is no decision). ``leaf_cost``
    is the KV cost of the leaf itself, e.g. its step tokens. ``cluster`` is its semantic cluster label.

    Example:
        >>> EtsCandidate(leaf_weight=0.5, ancestors=("s1", "s1.2"), leaf_cost=40.0, cluster=0).cluster
        0
    """

    leaf_weight: float
    ancestors: tuple[str, ...]
    leaf_cost: float
    cluster: int


def select_leaves(
    candidates: Sequence[EtsCandidate],
    ancestor_costs: Mapping[str, float],
    lambda_cost: float = 1.0,
    lambda_semantic: float = 1.5,
) -> list[bool]:
    """Choose which leaves to keep by solving the ETS integer program exactly (``scipy.optimize.milp``).

    Binary variables: x_i (keep leaf i), y_j (keep ancestor j), z_k (cluster k covered). Constraints:
    ``y_j >= x_i`` for every leaf i under j, ``y_j <= sum_{i under j} x_i``, ``z_k <= sum_{i in k} x_i``
    and ``sum_i x_i >= 1``. Objective (maximised)::

        sum_i O_i x_i - lambda_cost * (sum_j c_j y_j + sum_i c_i x_i) + (lambda_semantic / K) * sum_k z_k

    Normalisation: O_i are the leaf weights divided by their sum (all zero stays all zero), and every cost
    is divided by the total cost of ALL nodes in the program (every leaf plus every distinct ancestor), so
    keeping everything costs exactly ``lambda_cost``. This makes ``lambda_cost`` independent of token
    scale and reproduces the paper's ``C = 1 / (#leaves + #ancestors)`` when all costs are equal. K is the
    number of distinct clusters. Returns keep flags in input order. If the solver does not report an
    optimal solution, every leaf is kept (the safe choice: nothing is pruned, REBASE behaviour).

    Example:
        >>> cands = [EtsCandidate(0.5, ("a",), 1.0, 0), EtsCandidate(0.5, ("a",), 1.0, 0),
        ...          EtsCandidate(0.5, ("b",), 1.0, 1)]
        >>> select_leaves(cands, {"a": 1.0, "b": 1.0}, lambda_cost=0.0, lambda_semantic=0.0)
        [True, True, True]
    """
    n = len(candidates)
    if n == 0:
        return []
    if lambda_cost < 0 or lambda_semantic < 0:
        raise ValueError("lambda_cost and lambda_semantic must be non-negative")
    weights = np.array([c.leaf_weight for c in candidates], dtype=float)
    leaf_costs = np.array([c.leaf_cost for c in candidates], dtype=float)
    if not (np.all(np.isfinite(weights)) and np.all(weights >= 0)):
        raise ValueError("leaf weights must be finite and non-negative")
    if not (np.all(np.isfinite(leaf_costs)) and np.all(leaf_costs >= 0)):
        raise ValueError("leaf costs must be finite and non-negative")

    # Index the distinct ancestors and clusters in first-appearance order (deterministic variable layout).
    ancestor_index: dict[str, int] = {}
    leaf_ancestors: list[list[int]] = []
    for cand in candidates:
        # dict.fromkeys drops a repeated id within one path without reordering it.
        unique = dict.fromkeys(cand.ancestors)
        leaf_ancestors.append([ancestor_index.setdefault(a, len(ancestor_index)) for a in unique])
    cluster_index: dict[int, int] = {}
    leaf_cluster = [cluster_index.setdefault(c.cluster, len(cluster_index)) for c in candidates]
    m, k = len(ancestor_index), len(cluster_index)

    missing = [a for a in ancestor_index if a not in ancestor_costs]
    if missing:
        raise ValueError(f"ancestor_costs has no entry for {missing}")
    anc_costs = np.array([float(ancestor_costs[a]) for a in ancestor_index], dtype=float)
    if not (np.all(np.isfinite(anc_costs)) and np.all(anc_costs >= 0)):
        raise ValueError("ancestor costs must be finite and non-negative")

    weight_total = weights.sum()
    outcome = weights / weight_total if weight_total > 0 else weights
    cost_total = leaf_costs.sum() + anc_costs.sum()
    if cost_total > 0:
        leaf_costs, anc_costs = leaf_costs / cost_total, anc_costs / cost_total

    # Variable layout: [x_0..x_{n-1}, y_0..y_{m-1}, z_0..z_{k-1}]; milp minimises, so negate the objective.
    x0, y0, z0 = 0, n, n + m
    objective = np.concatenate(
        [
            -(outcome - lambda_cost * leaf_costs),
            lambda_cost * anc_costs,
            np.full(k, -lambda_semantic / k),
        ]
    )

    rows: list[np.ndarray] = []
    lower: list[float] = []
    upper: list[float] = []

    def add_row(coeffs: dict[int, float], lo: float, hi: float) -> None:
        row = np.zeros(n + m + k)
        for col, value in coeffs.items():
            row[col] += value
        rows.append(row)
        lower.append(lo)
        upper.append(hi)

    children: list[list[int]] = [[] for _ in range(m)]
    for i, ancestors in enumerate(leaf_ancestors):
        for j in ancestors:
            children[j].append(i)
            add_row({y0 + j: 1.0, x0 + i: -1.0}, 0.0, np.inf)  # y_j >= x_i: a kept leaf pins its path
    for j, kids in enumerate(children):
        # y_j <= sum x_i: an ancestor with no kept leaf is freed (matters when lambda_cost == 0).
        add_row({y0 + j: 1.0, **{x0 + i: -1.0 for i in kids}}, -np.inf, 0.0)
    members: list[list[int]] = [[] for _ in range(k)]
    for i, c in enumerate(leaf_cluster):
        members[c].append(i)
    for c, leaves in enumerate(members):
        add_row({z0 + c: 1.0, **{x0 + i: -1.0 for i in leaves}}, -np.inf, 0.0)  # z_k only if k is covered
    add_row({x0 + i: 1.0 for i in range(n)}, 1.0, np.inf)  # never prune the whole frontier

    result = milp(
        objective,
        integrality=np.ones(n + m + k),
        bounds=Bounds(0.0, 1.0),
        constraints=LinearConstraint(np.vstack(rows), lower, upper),
        # The programs are tiny; ask for the true optimum rather than HiGHS's default relative gap.
        options={"mip_rel_gap": 0.0},
    )
    if not result.success or result.x is None:
        # Solver failure (should not happen: keeping everything is always feasible). Fall back to keeping
        # every leaf, which degrades ETS to plain REBASE for this depth instead of losing the search.
        return [True] * n
    return [bool(v > 0.5) for v in result.x[:n]]

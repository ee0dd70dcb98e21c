"""REBASE allocation, cosine clustering, the ETS leaf-selection program and the search tree's KV metric.

Every expected value below is worked out by hand in a comment; the ETS program is also checked
against brute force over all subsets on seeded random instances.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from strategies.ets_program import EtsCandidate, rebase_allocation, select_leaves
from strategies.tree import SearchTree
from verifiers.semantic import cluster_by_cosine

# --------------------------------------------------------------------------- rebase_allocation


def test_rebase_empty_and_zero_width() -> None:
    assert rebase_allocation([], width=8) == []
    assert rebase_allocation([0.3, 0.7], width=0) == [0, 0]


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 16, 64])
@pytest.mark.parametrize("scores", [[0.5], [0.1, 0.9], [0.2, 0.2, 0.2], [0.9, 0.1, 0.5, 0.45, 0.0, 1.0]])
def test_rebase_total_is_width(scores: list[float], width: int) -> None:
    counts = rebase_allocation(scores, width)
    assert sum(counts) == width
    assert all(c >= 0 for c in counts)


def test_rebase_keeps_original_order_and_favours_higher_scores() -> None:
    # T=1, scores (0, 1, 0.5): visited 1, 0.5, 0 with weights (after -max) 1, e^-0.5=0.6065, e^-1=0.3679.
    # 10*1/1.9744=5.06 -> 6, rem 4; 4*0.6065/0.9744=2.49 -> 3, rem 1; last gets 1.
    assert rebase_allocation([0.0, 1.0, 0.5], width=10, temperature=1.0) == [1, 6, 3]


def test_rebase_dominant_score_takes_most_of_the_width() -> None:
    # T=0.2: w = e^{(0.1-0.9)/0.2} = e^-4 = 0.0183 vs 1 -> 8*1/1.0366 = 7.72 -> 8, nothing left.
    assert rebase_allocation([0.1, 0.9, 0.1], width=8) == [0, 8, 0]


def test_rebase_equal_scores_spread_evenly() -> None:
    assert rebase_allocation([0.4] * 4, width=8) == [2, 2, 2, 2]
    # 6 over 4 equal: ceil(6/4)=2, ceil(4/3)=2, ceil(2/2)=1, 1 -> ties served in input order.
    assert rebase_allocation([0.4] * 4, width=6) == [2, 2, 1, 1]
    # exact shares must not be bumped by float noise: 3 over 3 is 1 each, 7 over 7 is 1 each.
    assert rebase_allocation([0.3] * 3, width=3) == [1, 1, 1]
    assert rebase_allocation([0.123456789] * 7, width=7) == [1] * 7


def test_rebase_fewer_children_than_candidates() -> None:
    # width 2 over 4 equal: ceil(2/4)=1, ceil(1/3)=1, then nothing left.
    assert rebase_allocation([0.5] * 4, width=2) == [1, 1, 0, 0]


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [
        # scores (1, 0), width 10: share of the top = 1 / (1 + e^{-1/T}).
        (0.2, [10, 0]),  # 1/(1+e^-5) = 0.9933 -> 9.93 -> 10
        (1.0, [8, 2]),  # 1/(1+e^-1) = 0.7311 -> 7.31 -> 8
        (10.0, [6, 4]),  # 1/(1+e^-0.1) = 0.5250 -> 5.25 -> 6
    ],
)
def test_rebase_temperature_flattens_the_allocation(temperature: float, expected: list[int]) -> None:
    assert rebase_allocation([1.0, 0.0], width=10, temperature=temperature) == expected


def test_rebase_is_stable_for_huge_scores_and_rejects_bad_input() -> None:
    # exp(1000/0.2) would overflow without subtracting the max.
    assert rebase_allocation([1000.0, 1000.0], width=4) == [2, 2]
    with pytest.raises(ValueError):
        rebase_allocation([0.1], width=4, temperature=0.0)
    with pytest.raises(ValueError):
        rebase_allocation([float("nan")], width=4)


# --------------------------------------------------------------------------- cluster_by_cosine


def test_cluster_identical_and_near_identical_vectors_share_a_cluster() -> None:
    base = np.array([0.3, 0.5, 0.8])
    rows = np.vstack([base, base, 2.0 * base, base + np.array([1e-3, -1e-3, 0.0])])
    assert cluster_by_cosine(rows) == [0, 0, 0, 0]


def test_cluster_orthogonal_vectors_are_separate() -> None:
    assert cluster_by_cosine(np.eye(3)) == [0, 1, 2]
    # a duplicate pair plus an orthogonal vector; labels follow first appearance.
    rows = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    assert cluster_by_cosine(rows) == [0, 1, 0]


def test_cluster_threshold_decides_the_cut() -> None:
    # angle 0.45 rad: cosine distance 1 - cos(0.45) = 0.0996.
    rows = np.array([[1.0, 0.0], [math.cos(0.45), math.sin(0.45)]])
    assert cluster_by_cosine(rows, distance_threshold=0.05) == [0, 1]
    assert cluster_by_cosine(rows, distance_threshold=0.2) == [0, 0]


def test_cluster_small_inputs_and_zero_vectors() -> None:
    assert cluster_by_cosine(np.zeros((0, 4))) == []
    assert cluster_by_cosine(np.array([[0.2, 0.1]])) == [0]
    # zero rows: no NaN, grouped together and never merged with a real direction.
    rows = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    assert cluster_by_cosine(rows) == [0, 1, 0, 1]
    assert cluster_by_cosine(np.zeros((1, 3))) == [0]


# --------------------------------------------------------------------------- select_leaves


def _objective(
    keep: list[bool],
    candidates: list[EtsCandidate],
    ancestor_costs: dict[str, float],
    lambda_cost: float,
    lambda_semantic: float,
) -> float:
    """The ETS objective of one keep-set, evaluated directly (y_j = any kept leaf under j, z_k = k covered)."""
    weight_sum = sum(c.leaf_weight for c in candidates)
    ancestors = {a for c in candidates for a in c.ancestors}
    cost_sum = sum(c.leaf_cost for c in candidates) + sum(ancestor_costs[a] for a in ancestors)
    clusters = {c.cluster for c in candidates}
    kept = [c for c, k in zip(candidates, keep, strict=True) if k]
    outcome = sum(c.leaf_weight for c in kept) / weight_sum if weight_sum else 0.0
    kept_ancestors = {a for c in kept for a in c.ancestors}
    cost = (sum(c.leaf_cost for c in kept) + sum(ancestor_costs[a] for a in kept_ancestors)) / cost_sum
    coverage = len({c.cluster for c in kept}) / len(clusters)
    return outcome - lambda_cost * cost + lambda_semantic * coverage


def _brute_force_best(
    candidates: list[EtsCandidate], ancestor_costs: dict[str, float], lambda_cost: float, lambda_semantic: float
) -> float:
    best = -math.inf
    for keep in itertools.product([False, True], repeat=len(candidates)):
        if any(keep):  # sum x_i >= 1
            best = max(best, _objective(list(keep), candidates, ancestor_costs, lambda_cost, lambda_semantic))
    return best


def test_select_empty() -> None:
    assert select_leaves([], {}) == []


def test_select_without_penalties_keeps_every_weighted_leaf() -> None:
    # lambda_cost = lambda_semantic = 0: objective = sum O_i x_i, each positive O_i adds value.
    cands = [
        EtsCandidate(0.5, ("a",), 10.0, 0),
        EtsCandidate(0.3, ("a", "a.1"), 30.0, 1),
        EtsCandidate(0.2, ("b",), 5.0, 0),
    ]
    costs = {"a": 100.0, "a.1": 50.0, "b": 70.0}
    assert select_leaves(cands, costs, lambda_cost=0.0, lambda_semantic=0.0) == [True, True, True]


def test_select_prefers_the_sibling_pair_sharing_an_ancestor() -> None:
    # Leaves A1, A2 under ancestor "a"; leaf B under "b". Equal weights -> O = 1/3 each, one cluster
    # (lambda_semantic = 0). Costs: a = b = 4, leaves 1 each; total 11, so c_anc = 4/11, c_leaf = 1/11.
    # lambda_cost = 1:
    #   {A1} or {A2} or {B}: 1/3 - 5/11  = -4/33
    #   {A1, A2}:            2/3 - 6/11  = +4/33   <- optimum (unique)
    #   {A_, B}:             2/3 - 10/11 = -8/33
    #   {A1, A2, B}:         1   - 11/11 =  0
    # lambda_cost = 3: singles 1/3 - 15/11 = -34/33, pair 2/3 - 18/11 = -32/33, all 1 - 3 = -66/33,
    # {A_, B} 2/3 - 30/11 = -68/33 -> the pair still wins: it buys two leaves for one ancestor.
    cands = [
        EtsCandidate(1.0, ("a",), 1.0, 0),
        EtsCandidate(1.0, ("a",), 1.0, 0),
        EtsCandidate(1.0, ("b",), 1.0, 0),
    ]
    costs = {"a": 4.0, "b": 4.0}
    assert select_leaves(cands, costs, lambda_cost=1.0, lambda_semantic=0.0) == [True, True, False]
    assert select_leaves(cands, costs, lambda_cost=3.0, lambda_semantic=0.0) == [True, True, False]
    assert _objective([True, True, False], cands, costs, 1.0, 0.0) == pytest.approx(4 / 33)
    # Costs scale out: multiplying every cost by 100 changes nothing (normalised by the total).
    big = {key: 100 * value for key, value in costs.items()}
    scaled = [EtsCandidate(c.leaf_weight, c.ancestors, 100 * c.leaf_cost, c.cluster) for c in cands]
    assert select_leaves(scaled, big, lambda_cost=1.0, lambda_semantic=0.0) == [True, True, False]


def test_select_semantic_term_keeps_one_per_cluster_instead_of_duplicates() -> None:
    # D1, D2 in cluster 0 with weight 0.4 each, E in cluster 1 with weight 0.2; no ancestors, leaf costs
    # equal -> c = 1/3 each. lambda_cost = 1.5 -> each kept leaf costs 0.5: net D = -0.1, net E = -0.3.
    # lambda_semantic = 0: every leaf loses value, so keep exactly one (the constraint), a D (-0.1).
    # lambda_semantic = 1.5, K = 2 -> +0.75 per covered cluster:
    #   {D}: 0.65   {D1, D2}: 0.55   {E}: 0.45   {D, E}: -0.4 + 1.5 = 1.1 <- optimum   {D1, D2, E}: 1.0
    cands = [
        EtsCandidate(0.4, (), 1.0, 0),
        EtsCandidate(0.4, (), 1.0, 0),
        EtsCandidate(0.2, (), 1.0, 1),
    ]
    without = select_leaves(cands, {}, lambda_cost=1.5, lambda_semantic=0.0)
    assert sum(without) == 1 and not without[2]
    keep = select_leaves(cands, {}, lambda_cost=1.5, lambda_semantic=1.5)
    assert keep[2] and sum(keep[:2]) == 1  # which duplicate is a tie; never both
    assert _objective(keep, cands, {}, 1.5, 1.5) == pytest.approx(1.1)


def test_select_always_keeps_at_least_one_leaf() -> None:
    # lambda_cost = 100 and c = 1/2 per leaf: 0.9 - 50 vs 0.1 - 50; keeping none is forbidden,
    # so the better leaf alone is kept.
    cands = [EtsCandidate(0.9, (), 1.0, 0), EtsCandidate(0.1, (), 1.0, 0)]
    assert select_leaves(cands, {}, lambda_cost=100.0, lambda_semantic=0.0) == [True, False]
    # one leaf, huge costs: still kept.
    assert select_leaves([EtsCandidate(1.0, ("a",), 5.0, 3)], {"a": 9.0}, lambda_cost=1e6) == [True]


def test_select_handles_degenerate_weights_and_costs() -> None:
    # all-zero weights and costs: objective is coverage only; both clusters covered is optimal (value 1.5).
    cands = [EtsCandidate(0.0, ("a",), 0.0, 0), EtsCandidate(0.0, ("a",), 0.0, 1)]
    assert select_leaves(cands, {"a": 0.0}) == [True, True]
    with pytest.raises(ValueError, match="ancestor_costs"):
        select_leaves([EtsCandidate(1.0, ("missing",), 1.0, 0)], {})
    with pytest.raises(ValueError):
        select_leaves([EtsCandidate(-1.0, (), 1.0, 0)], {})


def _random_instance(rng: np.random.Generator) -> tuple[list[EtsCandidate], dict[str, float]]:
    """A random search tree: internal nodes hang off earlier nodes or the root; leaves hang off a node."""
    n_internal = int(rng.integers(0, 6))
    parents: dict[str, str | None] = {}
    for j in range(n_internal):
        pick = int(rng.integers(-1, j)) if j else -1
        parents[f"n{j}"] = None if pick < 0 else f"n{pick}"
    costs = {node: float(rng.integers(0, 200)) for node in parents}
    candidates = []
    for _ in range(int(rng.integers(1, 7))):
        node = f"n{int(rng.integers(0, n_internal))}" if n_internal and rng.random() < 0.85 else None
        path: list[str] = []
        while node is not None:
            path.append(node)
            node = parents[node]
        weight = float(rng.random()) if rng.random() < 0.9 else 0.0
        candidates.append(
            EtsCandidate(weight, tuple(reversed(path)), float(rng.integers(1, 300)), int(rng.integers(0, 3)))
        )
    return candidates, costs


@pytest.mark.parametrize("seed", range(60))
def test_select_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    candidates, costs = _random_instance(rng)
    lambda_cost = float(rng.choice([0.0, 0.5, 1.0, 2.0, 5.0]))
    lambda_semantic = float(rng.choice([0.0, 0.7, 1.5, 3.0]))
    keep = select_leaves(candidates, costs, lambda_cost=lambda_cost, lambda_semantic=lambda_semantic)
    assert len(keep) == len(candidates) and any(keep)
    got = _objective(keep, candidates, costs, lambda_cost, lambda_semantic)
    assert got == pytest.approx(_brute_force_best(candidates, costs, lambda_cost, lambda_semantic), abs=1e-7)


# --------------------------------------------------------------------------- kv_footprint


def test_kv_footprint_counts_shared_prefixes_once() -> None:
    tree = SearchTree(prompt_tokens=100)
    a = tree.add_child(tree.root, "a", 10)
    b = tree.add_child(a, "b", 20)
    c, d = tree.add_child(b, "c", 5), tree.add_child(b, "d", 7)
    e = tree.add_child(a, "e", 3)
    # the prompt once, then nodes a, b shared by two paths: 100 + 10 + 20 + 5 + 7 + 3 = 145
    # (not 100 + 10+20+5 + 10+20+7 + 10+3 = 185).
    assert tree.kv_footprint([c, d, e]) == 145
    # the same path twice is the same memory.
    assert tree.kv_footprint([b, b]) == 130
    assert tree.kv_footprint([]) == 100
    assert tree.record_depth([e]) == 113 and tree.kv_per_depth == [113]

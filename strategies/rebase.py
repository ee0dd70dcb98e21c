"""``rebase`` and ``ets``: reward-balanced tree search, and its KV-sharing refinement.

REBASE keeps a tree of ``width`` leaves: at every depth each live node gets a share of
the remaining width proportional to softmax(score / T). ETS first solves a small integer
program per depth that keeps the candidates worth their KV memory and covering distinct
ideas (clusters of step embeddings), then runs the same allocation over the kept ones.
"""

from __future__ import annotations

import math

from pydantic import Field

from orchestrator.context import ReasoningContext
from orchestrator.errors import BudgetExceededError
from strategies.base import StrategyResult, register
from strategies.ets_program import EtsCandidate, cluster_by_cosine, rebase_allocation, select_leaves
from strategies.stepwise import StepSearch, StepSearchParams
from strategies.tree import Node
from verifiers.semantic import embed


class RebaseParams(StepSearchParams):
    """Parameters of ``rebase``."""

    width: int = Field(8, ge=1, le=128, description="leaves the tree may hold (finished leaves use it up)")
    balance_temperature: float = Field(0.2, gt=0.0, le=10.0, description="softmax temperature of the allocation")


class EtsParams(RebaseParams):
    """Parameters of ``ets``."""

    lambda_cost: float = Field(1.0, ge=0.0, description="weight of the KV-memory cost of kept nodes")
    lambda_semantic: float = Field(1.5, ge=0.0, description="weight of covering distinct step clusters")
    cluster_distance: float = Field(0.05, gt=0.0, lt=2.0, description="cosine distance that splits clusters")


async def _search(search: StepSearch, params: RebaseParams, prune) -> StrategyResult:
    width_left = params.width
    candidates: list[Node] = [search.tree.root]
    pruned_per_depth: list[int] = []
    try:
        counts = [params.width]
        while candidates and width_left > 0:
            children = await search.expand(candidates, counts)
            await search.score(children)
            width_left -= sum(c.finished for c in children)
            live = [c for c in children if not c.finished]
            if not live or width_left <= 0:
                break
            kept = await prune(search, live)
            counts = rebase_allocation([n.score or 0.0 for n in kept], width_left, params.balance_temperature)
            expanded = [n for n, count in zip(kept, counts, strict=True) if count > 0]
            for node in live:
                if node not in expanded:
                    node.status = "pruned"  # by the program (ETS) or by a zero share of the width
            pruned_per_depth.append(len(live) - len(expanded))
            await search.record_depth(children, expanded)  # their paths: the KV the next depth keeps
            counts = [count for count in counts if count > 0]
            candidates = expanded
    except BudgetExceededError:
        return search.result(best_so_far=True, extra_trace={"pruned_per_depth": pruned_per_depth})
    return search.result(best_so_far=False, extra_trace={"pruned_per_depth": pruned_per_depth})


async def _keep_all(search: StepSearch, live: list[Node]) -> list[Node]:
    return live


def _ets_pruner(params: EtsParams):
    async def prune(search: StepSearch, live: list[Node]) -> list[Node]:
        """Solve the ETS program over this depth's live candidates."""
        if len(live) <= 1:
            return live
        weights = [math.exp((n.score or 0.0) / params.balance_temperature) for n in live]
        clusters = cluster_by_cosine(await embed([n.step for n in live]), params.cluster_distance)
        ancestors_of = {n.id: [a for a in search.tree.path(n)[:-1]] for n in live}
        ancestor_costs = {a.id: float(a.tokens) for chain in ancestors_of.values() for a in chain}
        candidates = [
            EtsCandidate(
                leaf_weight=weight,
                ancestors=tuple(a.id for a in ancestors_of[node.id]),
                leaf_cost=float(node.tokens),
                cluster=cluster,
            )
            for node, weight, cluster in zip(live, weights, clusters, strict=True)
        ]
        keep = select_leaves(candidates, ancestor_costs, params.lambda_cost, params.lambda_semantic)
        return [node for node, kept in zip(live, keep, strict=True) if kept]

    return prune


@register("rebase", RebaseParams)
async def rebase(question: str, ctx: ReasoningContext, params: RebaseParams) -> StrategyResult:
    """REBASE: expand every live node in proportion to softmax(score / T)."""
    return await _search(StepSearch(question, ctx, params), params, _keep_all)


@register("ets", EtsParams)
async def ets(question: str, ctx: ReasoningContext, params: EtsParams) -> StrategyResult:
    """ETS: REBASE after pruning each depth with a KV-cost / coverage integer program."""
    return await _search(StepSearch(question, ctx, params), params, _ets_pruner(params))

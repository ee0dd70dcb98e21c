"""``rebase`` and ``ets``: reward-balanced tree search, and its KV-sharing refinement, as selection policies.

REBASE keeps a tree of ``width`` leaves: at every depth each live node gets a share of
the width not yet used by finished leaves, proportional to softmax(score / T); a node with
a zero share is pruned. ETS first solves a small integer program per depth that keeps the
candidates worth their KV memory and covering distinct ideas (clusters of step embeddings),
then shares the width over the kept ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio
from pydantic import Field

from orchestrator.core.session import Session
from strategies.base import StrategyResult, register
from strategies.ets_program import EtsCandidate, rebase_allocation, select_leaves
from strategies.stepwise import Frontier, StepSearch, StepSearchParams, run_search
from strategies.tree import Node, SearchTree
from verifiers.semantic import cluster_by_cosine


class RebaseParams(StepSearchParams):
    """Parameters of ``rebase``."""

    width: int = Field(8, ge=1, le=128, description="leaves the tree may hold (finished leaves use it up)")
    balance_temperature: float = Field(0.2, gt=0.0, le=10.0, description="softmax temperature of the allocation")

    def parallel_streams(self) -> int:
        return self.width


class EtsParams(RebaseParams):
    """Parameters of ``ets``."""

    lambda_cost: float = Field(1.0, ge=0.0, description="weight of the KV-memory cost of kept nodes")
    lambda_semantic: float = Field(1.5, ge=0.0, description="weight of covering distinct step clusters")
    cluster_distance: float = Field(0.05, gt=0.0, lt=2.0, description="cosine distance that splits clusters")


@dataclass
class Rebalance:
    """REBASE: share the width left over the live nodes by softmax(score / T)."""

    params: RebaseParams

    @property
    def root_children(self) -> int:
        return self.params.width

    def width_left(self, tree: SearchTree) -> int:
        return self.params.width - sum(node.finished for node in tree.nodes.values())

    def done(self, tree: SearchTree) -> bool:
        return self.width_left(tree) <= 0

    async def select(self, search: StepSearch, live: list[Node]) -> Frontier:
        kept = await self.keep(search, live)
        scores = [node.score or 0.0 for node in kept]
        shares = rebase_allocation(scores, self.width_left(search.tree), self.params.balance_temperature)
        return [(node, share) for node, share in zip(kept, shares, strict=True) if share > 0]

    async def keep(self, search: StepSearch, live: list[Node]) -> list[Node]:
        """The candidates the width is shared over: all of them."""
        return live


@dataclass
class EtsRebalance(Rebalance):
    """ETS: REBASE over the live nodes an integer program keeps for their value, KV cost and coverage."""

    params: EtsParams

    async def keep(self, search: StepSearch, live: list[Node]) -> list[Node]:
        if len(live) <= 1:
            return live
        params = self.params
        embedded = await search.session.embedder.embed([node.step for node in live])
        clusters = cluster_by_cosine(embedded, params.cluster_distance)
        ancestors = {node.id: search.tree.path(node)[:-1] for node in live}
        candidates = [
            EtsCandidate(
                leaf_weight=math.exp((node.score or 0.0) / params.balance_temperature),
                ancestors=tuple(a.id for a in ancestors[node.id]),
                leaf_cost=float(node.tokens),
                cluster=cluster,
            )
            for node, cluster in zip(live, clusters, strict=True)
        ]
        costs = {a.id: float(a.tokens) for chain in ancestors.values() for a in chain}
        # The program is CPU work: off the event loop, so one search does not stall every other request.
        keep = await anyio.to_thread.run_sync(
            select_leaves, candidates, costs, params.lambda_cost, params.lambda_semantic
        )
        return [node for node, kept in zip(live, keep, strict=True) if kept]


@register("rebase", RebaseParams)
async def rebase(question: str, session: Session, params: RebaseParams) -> StrategyResult:
    """REBASE: expand every live node in proportion to softmax(score / T)."""
    return await run_search(StepSearch(question, session, params), Rebalance(params))


@register("ets", EtsParams)
async def ets(question: str, session: Session, params: EtsParams) -> StrategyResult:
    """ETS: REBASE after pruning each depth with a KV-cost / coverage integer program."""
    return await run_search(StepSearch(question, session, params), EtsRebalance(params))

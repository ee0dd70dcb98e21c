"""``beam_search`` and ``dvts``: verifier-guided search over steps, as selection policies.

Beam search keeps the ``width`` best partial solutions at every depth, each expanded
into ``samples_per_beam`` one-step children. DVTS (diverse verifier tree search) runs
``width`` independent subtrees instead: every subtree keeps only its own best child, so
the subtrees cannot collapse onto one line of reasoning. Both stop once ``width x
samples_per_beam`` leaves (N) have finished, as search-and-learn's do, and answer with the
best-scored one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from orchestrator.core.session import Session
from strategies.base import StrategyResult, register
from strategies.stepwise import Frontier, StepSearch, StepSearchParams, run_search
from strategies.tree import Node, SearchTree


class BeamSearchParams(StepSearchParams):
    """Parameters of ``beam_search``."""

    width: int = Field(4, ge=1, le=64, description="beams kept per depth")
    samples_per_beam: int = Field(4, ge=1, le=32, description="one-step children sampled per beam")

    def parallel_streams(self) -> int:
        return self.width * self.samples_per_beam


class DvtsParams(StepSearchParams):
    """Parameters of ``dvts``."""

    width: int = Field(4, ge=1, le=64, description="independent subtrees")
    samples_per_beam: int = Field(4, ge=1, le=32, description="children sampled per subtree per depth")

    def parallel_streams(self) -> int:
        return self.width * self.samples_per_beam


@dataclass
class KeepBest:
    """Keep the ``width`` best-scored live nodes (per subtree with ``per_subtree``); each gets ``samples`` children.

    A subtree is named by a node's depth-1 ancestor, so at depth 1 every node starts its own.
    """

    width: int
    samples: int
    per_subtree: bool = False

    @property
    def root_children(self) -> int:
        return self.width * self.samples

    def done(self, tree: SearchTree) -> bool:
        # N = width x samples finished leaves, as search-and-learn stops: stopping at `width` of them
        # ended a width-1 search at its first finished leaf, the hastiest solution rather than the best.
        return sum(node.finished for node in tree.nodes.values()) >= self.width * self.samples

    async def select(self, search: StepSearch, live: list[Node]) -> Frontier:
        by_score = sorted(live, key=lambda node: node.score or 0.0, reverse=True)
        if self.per_subtree:
            best_of_subtree: dict[str, Node] = {}
            for node in by_score:
                best_of_subtree.setdefault(search.tree.path(node)[0].id, node)
            by_score = list(best_of_subtree.values())
        return [(node, self.samples) for node in by_score[: self.width]]


@register("beam_search", BeamSearchParams)
async def beam_search(question: str, session: Session, params: BeamSearchParams) -> StrategyResult:
    """Beam search over steps, scored by a process verifier."""
    policy = KeepBest(params.width, params.samples_per_beam)
    return await run_search(StepSearch(question, session, params), policy)


@register("dvts", DvtsParams)
async def dvts(question: str, session: Session, params: DvtsParams) -> StrategyResult:
    """Diverse verifier tree search: independent greedy subtrees, best leaf overall."""
    policy = KeepBest(params.width, params.samples_per_beam, per_subtree=True)
    return await run_search(StepSearch(question, session, params), policy)

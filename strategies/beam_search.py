"""``beam_search`` and ``dvts``: verifier-guided search over steps.

Beam search keeps the ``width`` best partial solutions at every depth, each expanded
into ``samples_per_beam`` one-step children. DVTS (diverse verifier tree search) runs
``width`` independent subtrees instead: every beam keeps only its own best child, so the
subtrees cannot collapse onto one line of reasoning.
"""

from __future__ import annotations

from pydantic import Field

from orchestrator.context import ReasoningContext
from orchestrator.errors import BudgetExceededError
from strategies.base import StrategyResult, register
from strategies.stepwise import StepSearch, StepSearchParams
from strategies.tree import Node


class BeamSearchParams(StepSearchParams):
    """Parameters of ``beam_search``."""

    width: int = Field(4, ge=1, le=64, description="beams kept per depth")
    samples_per_beam: int = Field(4, ge=1, le=32, description="one-step children sampled per beam")


class DvtsParams(StepSearchParams):
    """Parameters of ``dvts``."""

    width: int = Field(4, ge=1, le=64, description="independent subtrees")
    samples_per_beam: int = Field(4, ge=1, le=32, description="children sampled per subtree per depth")


async def _search(search: StepSearch, width: int, samples: int, per_parent: bool) -> StrategyResult:
    beams: list[Node] = [search.tree.root]
    first = True
    try:
        while beams:
            counts = [width * samples] if first else [samples] * len(beams)
            children = await search.expand(beams, counts)
            await search.score(children)
            live = [c for c in children if not c.finished]
            beams = _keep_best(live, width, per_parent=per_parent and not first)
            for child in live:
                if child not in beams:
                    child.status = "pruned"
            await search.record_depth(children, beams)
            if sum(n.finished for n in search.tree.nodes.values()) >= width:
                break
            first = False
    except BudgetExceededError:
        return search.result(best_so_far=True)
    return search.result(best_so_far=False)


def _keep_best(live: list[Node], width: int, *, per_parent: bool) -> list[Node]:
    by_score = sorted(live, key=lambda n: n.score or 0.0, reverse=True)
    if not per_parent:
        return by_score[:width]
    kept: dict[str | None, Node] = {}
    for node in by_score:  # the best child of each subtree's beam
        kept.setdefault(node.parent, node)
    return list(kept.values())[:width]


@register("beam_search", BeamSearchParams)
async def beam_search(question: str, ctx: ReasoningContext, params: BeamSearchParams) -> StrategyResult:
    """Beam search over steps, scored by a process verifier."""
    return await _search(StepSearch(question, ctx, params), params.width, params.samples_per_beam, per_parent=False)


@register("dvts", DvtsParams)
async def dvts(question: str, ctx: ReasoningContext, params: DvtsParams) -> StrategyResult:
    """Diverse verifier tree search: independent greedy subtrees, best leaf overall."""
    return await _search(StepSearch(question, ctx, params), params.width, params.samples_per_beam, per_parent=True)

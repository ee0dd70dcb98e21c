"""The one step-search loop that beam search, DVTS, REBASE and ETS share.

Each depth has three phases, as in tree-of-thought's BFS:

1. generate — every node of the frontier gets its number of one-step children, all in ONE
   batched call under the request's tree id, so the branches run in the same engine steps on
   the same replica and share the prompt's KV. Generation stops at the step delimiter (kept in
   the text, so the next step continues from it). A child is finished when the model ends its
   turn, states an answer, or the depth cap is reached;
2. evaluate — the step verifier scores each child's path (aggregated over its steps);
3. select — the algorithm's ``SearchPolicy`` says which live children survive and how many
   children each gets next; the others are pruned.

The search stops when nothing is live, when the policy is done, or when the budget runs out
(then it answers with its best so far). A depth that goes on charges its KV footprint: the
tokens of the unique nodes on the surviving paths, which the next depth holds in KV.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.errors import BudgetExceededError
from orchestrator.core.session import Session
from orchestrator.core.verification import Aggregation, ScoreRequest
from strategies.base import StrategyResult
from strategies.tree import Node, SearchTree
from verifiers.extraction import extract_answer
from verifiers.registry import CONFIDENCE_VERIFIERS, VerifierName

STEP_SYSTEM_PROMPT = (
    "Solve the problem step by step. Write each step on its own line followed by a blank line. "
    "Write the arithmetic of each step as an equation, like 3 + 4 = 7. "
    "Finish with 'The answer is <number>.'"
)
_STATES_ANSWER = re.compile(r"answer is|\\boxed\{", re.IGNORECASE)

Frontier = list[tuple[Node, int]]
"""The nodes to expand next, each with its number of children."""


class StepSearchParams(BaseModel):
    """Parameters every step-wise search shares."""

    model_config = ConfigDict(extra="forbid")

    verifier: VerifierName = Field("arith_steps", description="step verifier: arith_steps, self_judge, prm")
    aggregation: Aggregation = "last"
    step_delimiter: str = Field("\n\n", min_length=1)
    max_steps: int = Field(8, ge=1, le=64)
    step_max_tokens: int = Field(96, ge=1, le=2048)
    temperature: float = Field(0.8, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    system_prompt: str | None = STEP_SYSTEM_PROMPT
    logprobs: int = Field(
        0, ge=0, le=20, description="top-k logprobs per token: needed by the confidence and learned verifiers"
    )

    @model_validator(mode="after")
    def _token_verifiers_need_logprobs(self) -> StepSearchParams:
        if self.verifier in {*CONFIDENCE_VERIFIERS, "learned"} and self.logprobs == 0:
            raise ValueError(f"the {self.verifier} verifier reads token logprobs: set logprobs > 0 (e.g. 5)")
        return self


class SearchPolicy(Protocol):
    """What distinguishes one step-search algorithm from another: how it selects."""

    root_children: int
    """Children of the prompt at the first depth."""

    def done(self, tree: SearchTree) -> bool:
        """Whether the search has what it came for (enough finished leaves)."""
        ...

    async def select(self, search: StepSearch, live: list[Node]) -> Frontier:
        """The live children that survive, each with its number of children at the next depth."""
        ...


async def run_search(search: StepSearch, policy: SearchPolicy) -> StrategyResult:
    """Generate, evaluate, select, depth after depth, until the policy or the budget stops it."""
    frontier: Frontier = [(search.tree.root, policy.root_children)]
    try:
        while frontier:
            children = await search.expand(frontier)
            await search.score(children)
            live = [child for child in children if not child.finished]
            frontier = [] if not live or policy.done(search.tree) else await policy.select(search, live)
            await search.end_depth(children, live, frontier)
    except BudgetExceededError:
        return search.result(best_so_far=True)
    return search.result(best_so_far=False)


class StepSearch:
    """One search's tree, session and parameters, with the phases the loop runs."""

    def __init__(self, question: str, session: Session, params: StepSearchParams) -> None:
        self.question = question
        self.session = session
        self.params = params
        self.verifier = session.verifier(params.verifier)
        prompt = session.renderer.render_question(question, system=params.system_prompt)
        self.tree = SearchTree(prompt_tokens=session.renderer.count_tokens(prompt))
        self.pruned_per_depth: list[int] = []

    def prompt_for(self, node: Node) -> str:
        return self.session.renderer.render_question(
            self.question, system=self.params.system_prompt, partial_assistant=self.tree.partial_text(node)
        )

    async def expand(self, frontier: Frontier) -> list[Node]:
        """Give each node its number of one-step children, all in one batch; returns the children."""
        chosen = [(node, count) for node, count in frontier if count > 0]
        if not chosen:
            return []
        sampling = SamplingSettings(
            temperature=self.params.temperature,
            top_p=self.params.top_p,
            max_tokens=self.params.step_max_tokens,
            stop=(self.params.step_delimiter,),
            include_stop_str_in_output=True,
            logprobs=self.params.logprobs or None,
        )
        prompts = [self.prompt_for(node) for node, _ in chosen]
        results = await self.session.generate(prompts, sampling, n_per_prompt=[count for _, count in chosen])
        children = []
        for (node, _), result in zip(chosen, results, strict=True):
            for completion in result.completions:
                child = self.tree.add_child(node, completion.text, len(completion.token_ids), completion.logprobs)
                if self._is_final(child, completion.text, completion.finish_reason):
                    child.status = "finished"
                    child.answer = extract_answer(self.tree.partial_text(child))
                children.append(child)
        return children

    def _is_final(self, child: Node, text: str, finish_reason: str) -> bool:
        ended_turn = finish_reason == "stop" and not text.endswith(self.params.step_delimiter)
        states_answer = bool(_STATES_ANSWER.search(text))
        return ended_turn or states_answer or not text.strip() or child.depth >= self.params.max_steps

    async def score(self, nodes: Sequence[Node]) -> None:
        """Score each node's path with the verifier (aggregated over its steps)."""
        batch = [ScoreRequest(self.question, self.tree.steps(node), self.tree.path_logprobs(node)) for node in nodes]
        scores = await self.session.score(self.verifier, batch, self.params.aggregation)
        for node, score in zip(nodes, scores, strict=True):
            node.score = score

    async def end_depth(self, children: Sequence[Node], live: Sequence[Node], frontier: Frontier) -> None:
        """Prune the live children the policy dropped, charge the KV the next depth holds, report the depth.

        When the search stops here (empty frontier) the live children stay live: nothing chose against them.
        """
        footprint = None
        if frontier:
            kept = {node.id for node, _ in frontier}
            for node in live:
                if node.id not in kept:
                    node.status = "pruned"
            self.pruned_per_depth.append(len(live) - len(kept))
            footprint = self.tree.record_depth([node for node, _ in frontier])
            self.session.meter.record_tree_depth(footprint)
        await self.session.emit(
            {
                "type": "depth",
                "depth": max((n.depth for n in children), default=0),
                "kv_footprint_tokens": footprint,
                "candidates": [
                    {"id": n.id, "parent": n.parent, "step": n.step, "score": n.score, "status": n.status}
                    for n in children
                ],
            }
        )

    def result(self, *, best_so_far: bool) -> StrategyResult:
        """The best finished leaf (or, out of budget, the best partial path), with the tree."""
        finished = [n for n in self.tree.nodes.values() if n.finished and n.answer is not None]
        candidates = finished or [n for n in self.tree.nodes.values() if n.parent is not None]
        trace = {"tree": self.tree.to_trace(), "pruned_per_depth": self.pruned_per_depth}
        if not candidates:
            return StrategyResult(answer=None, output="", best_so_far=best_so_far, trace=trace)
        best = max(candidates, key=lambda n: (n.score if n.score is not None else -1.0, -n.depth))
        text = self.tree.partial_text(best)
        trace["chosen"] = best.id
        return StrategyResult(
            answer=best.answer if best.finished else extract_answer(text),
            output=text,
            best_so_far=best_so_far or not best.finished,
            cut_off=not best.finished,
            trace=trace,
        )

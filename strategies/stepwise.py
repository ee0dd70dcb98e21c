"""What every step-wise search shares: parameters, expanding a depth, scoring, choosing.

A depth is expanded in ONE batched call under the request's tree id, so all branches
run in the same engine steps on the same replica and share the prompt's KV. Each child
is one step: generation stops at the step delimiter (kept in the text, so the next step
continues from it). A child is finished when the model ends its turn, states an answer,
or the depth cap is reached.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.backends.base import SamplingSettings
from orchestrator.context import ReasoningContext
from strategies.base import StrategyResult
from strategies.tree import Node, SearchTree
from verifiers.base import Aggregation, ScoreRequest, VerifierName, get_verifier
from verifiers.extraction import extract_answer

STEP_SYSTEM_PROMPT = (
    "Solve the problem step by step. Write each step on its own line followed by a blank line. "
    "Write the arithmetic of each step as an equation, like 3 + 4 = 7. "
    "Finish with 'The answer is <number>.'"
)
_STATES_ANSWER = re.compile(r"answer is|\\boxed\{", re.IGNORECASE)


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


class StepSearch:
    """One search's tree, context and parameters, with the operations the strategies compose."""

    def __init__(self, question: str, ctx: ReasoningContext, params: StepSearchParams) -> None:
        self.question = question
        self.ctx = ctx
        self.params = params
        self.verifier = get_verifier(params.verifier)
        prompt = ctx.renderer.render_question(question, system=params.system_prompt)
        self.tree = SearchTree(prompt_tokens=ctx.renderer.count_tokens(prompt))

    def prompt_for(self, node: Node) -> str:
        return self.ctx.renderer.render_question(
            self.question, system=self.params.system_prompt, partial_assistant=self.tree.partial_text(node)
        )

    async def expand(self, nodes: Sequence[Node], counts: Sequence[int]) -> list[Node]:
        """Give each node its number of one-step children, all in one batch; returns the children."""
        chosen = [(node, count) for node, count in zip(nodes, counts, strict=True) if count > 0]
        if not chosen:
            return []
        sampling = SamplingSettings(
            temperature=self.params.temperature,
            top_p=self.params.top_p,
            max_tokens=self.params.step_max_tokens,
            stop=(self.params.step_delimiter,),
            include_stop_str_in_output=True,
        )
        prompts = [self.prompt_for(node) for node, _ in chosen]
        results = await self.ctx.generate(prompts, sampling, n_per_prompt=[count for _, count in chosen])
        children = []
        for (node, _), result in zip(chosen, results, strict=True):
            for completion in result.completions:
                child = self.tree.add_child(node, completion.text, len(completion.token_ids))
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
        batch = [ScoreRequest(self.question, self.tree.steps(node)) for node in nodes]
        scores = await self.ctx.score(self.verifier, batch, self.params.aggregation)
        for node, score in zip(nodes, scores, strict=True):
            node.score = score

    async def record_depth(self, children: Sequence[Node], live: Sequence[Node]) -> None:
        """Charge this depth's KV footprint (tokens of unique nodes on the live paths) and report the depth."""
        footprint = self.tree.record_depth(list(live))
        self.ctx.meter.record_tree_depth(footprint)
        await self.ctx.emit(
            {
                "type": "depth",
                "depth": len(self.tree.kv_per_depth),
                "kv_footprint_tokens": footprint,
                "candidates": [
                    {"id": n.id, "parent": n.parent, "step": n.step, "score": n.score, "status": n.status}
                    for n in children
                ],
            }
        )

    def result(self, *, best_so_far: bool, extra_trace: dict | None = None) -> StrategyResult:
        """The best finished leaf (or, out of budget, the best partial path), with the tree."""
        finished = [n for n in self.tree.nodes.values() if n.finished and n.answer is not None]
        candidates = finished or [n for n in self.tree.nodes.values() if n.parent is not None]
        trace = {"tree": self.tree.to_trace(), **(extra_trace or {})}
        if not candidates:
            return StrategyResult(answer=None, output="", best_so_far=best_so_far, trace=trace)
        best = max(candidates, key=lambda n: (n.score if n.score is not None else -1.0, -n.depth))
        text = self.tree.partial_text(best)
        trace["chosen"] = best.id
        return StrategyResult(
            answer=best.answer if best.finished else extract_answer(text),
            output=text,
            best_so_far=best_so_far or not best.finished,
            trace=trace,
        )

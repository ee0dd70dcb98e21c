"""The search tree shared by the step-wise strategies, and its trace.

A node is the prompt plus the steps on its root path. The tree records every node a
search created — its step text, tokens, score and fate (live, expanded, pruned,
finished) — so the result's trace shows exactly what the search did, and it measures
the KV footprint the way ETS does: tokens of the unique nodes on the live paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.core.backends.base import TokenLogprob

NodeStatus = Literal["live", "expanded", "pruned", "finished"]


@dataclass
class Node:
    """One partial (or finished) solution."""

    id: str
    parent: str | None
    depth: int
    step: str
    tokens: int
    score: float | None = None
    status: NodeStatus = "live"
    answer: str | None = None
    children: list[str] = field(default_factory=list)
    logprobs: tuple[TokenLogprob, ...] = ()  # the step's tokens' top-k logprobs, when drawn with them

    @property
    def finished(self) -> bool:
        return self.status == "finished"


class SearchTree:
    """Nodes by id, with the root standing for the prompt."""

    def __init__(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.root = Node(id="n0", parent=None, depth=0, step="", tokens=0, status="expanded")
        self.nodes: dict[str, Node] = {"n0": self.root}
        self.kv_per_depth: list[int] = []

    def add_child(self, parent: Node, step: str, tokens: int, logprobs: tuple[TokenLogprob, ...] | None = None) -> Node:
        """Attach a new live node holding ``step`` under ``parent``."""
        child = Node(
            id=f"n{len(self.nodes)}",
            parent=parent.id,
            depth=parent.depth + 1,
            step=step,
            tokens=tokens,
            logprobs=logprobs or (),
        )
        self.nodes[child.id] = child
        parent.children.append(child.id)
        parent.status = "expanded" if parent.status == "live" else parent.status
        return child

    def path(self, node: Node) -> list[Node]:
        """Nodes from the root's first child down to ``node``."""
        chain = []
        while node.parent is not None:
            chain.append(node)
            node = self.nodes[node.parent]
        return list(reversed(chain))

    def steps(self, node: Node) -> tuple[str, ...]:
        """The step texts on ``node``'s path."""
        return tuple(n.step for n in self.path(node))

    def path_logprobs(self, node: Node) -> tuple[TokenLogprob, ...] | None:
        """The logprobs of every token on ``node``'s path, or None if any step was drawn without them."""
        path = self.path(node)
        if not path or any(not n.logprobs for n in path):
            return None
        return tuple(position for n in path for position in n.logprobs)

    def partial_text(self, node: Node) -> str:
        """The assistant text written so far at ``node`` (steps keep their delimiters)."""
        return "".join(self.steps(node))

    def kv_footprint(self, live: list[Node]) -> int:
        """Prompt tokens once, plus tokens of every unique node on the live nodes' paths."""
        unique: dict[str, int] = {}
        for node in live:
            for on_path in self.path(node):
                unique[on_path.id] = on_path.tokens
        return self.prompt_tokens + sum(unique.values())

    def record_depth(self, live: list[Node]) -> int:
        """Note this depth's KV footprint; returns it (the caller charges the meter)."""
        footprint = self.kv_footprint(live)
        self.kv_per_depth.append(footprint)
        return footprint

    def to_trace(self) -> dict[str, Any]:
        """A JSON-ready record of the whole search."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "kv_footprint_per_depth": self.kv_per_depth,
            "nodes": [
                {
                    "id": n.id,
                    "parent": n.parent,
                    "depth": n.depth,
                    "step": n.step,
                    "tokens": n.tokens,
                    "score": n.score,
                    "status": n.status,
                    "answer": n.answer,
                }
                for n in self.nodes.values()
                if n.parent is not None
            ],
        }

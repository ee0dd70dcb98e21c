"""``spawn_join``: parallel sub-problems instead of one long chain (APR's spawn/join).

A thread decodes until it writes a spawn block, ``<spawn>["sub-problem", ...]</spawn>``
(decoding stops at ``</spawn>``). Each sub-problem becomes a child thread with a fresh
prompt built from the sub-problem alone; the children run concurrently (one task group,
their engine requests batched together under the request's tree id) and share the
request's budget meter. Their results replace the spawn block as a compact join block,
``<join>1. sub-problem => result</join>``, and the thread resumes.

- Limits: ``max_children`` per spawn, ``max_depth`` nesting levels, ``max_spawns`` rounds.
- A child that fails or runs out of budget is "no result" in the join; it never hangs the
  parent. A parent that is cancelled or fails cancels its children (the task group).
- A model that ignores the protocol just finishes its own chain (the trace says so); a
  malformed spawn block is cut and the thread continues alone.
- ``decomposition: countdown`` imposes the split for Countdown problems: each child
  explores a different first operation (``child_samples`` tries in one request, the first
  that checks kept); the join lists the full expressions the children found, marking the
  ones that check; once one checks, it is the answer and the parent does not resume.

Usage counts every thread (the meter is shared); the trace holds the thread tree and the
critical path: the tokens of the longest chain of threads that had to run one after another.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from orchestrator.core.errors import BudgetExceededError
from orchestrator.core.session import Session
from strategies.base import StrategyResult, register
from strategies.countdown_split import parse_countdown, run_split
from strategies.threads import CHILD_PROMPT, NO_RESULT, Thread, ThreadParams, ThreadTree, child_result
from verifiers.extraction import extract_answer

SPAWN_OPEN, SPAWN_CLOSE = "<spawn>", "</spawn>"
PARENT_PROMPT = (
    "Solve the problem step by step. If it splits into independent sub-problems, you may hand them "
    f'to helpers: write {SPAWN_OPEN}["first sub-problem", "second sub-problem"]{SPAWN_CLOSE} (a JSON list of '
    "self-contained questions) and stop. Their results come back as <join>...</join>; then continue. "
    "Finish with 'The answer is <answer>.'"
)


class SpawnJoinParams(ThreadParams):
    """Parameters of ``spawn_join``."""

    max_children: int = Field(4, ge=1, le=16, description="sub-problems run per spawn (extra ones are dropped)")
    max_depth: int = Field(1, ge=0, le=3, description="nesting levels: 1 = children may not spawn again")
    max_spawns: int = Field(2, ge=1, le=8, description="spawn rounds per thread")
    decomposition: Literal["model", "countdown"] = Field(
        "model", description="model: the model writes spawn blocks; countdown: one child per first operation"
    )

    def parallel_streams(self) -> int:
        """Every nesting level's children at once, each with its samples."""
        return self.max_children ** max(self.max_depth, 1) * self.child_samples


def parse_spawn(text: str) -> list[str] | None:
    """The sub-problems of the last spawn block in ``text``, or None if it is malformed.

    Example: ``parse_spawn('x <spawn>["2+2", "3*3"]</spawn>')`` is ``["2+2", "3*3"]``.
    """
    start, end = text.rfind(SPAWN_OPEN), text.rfind(SPAWN_CLOSE)
    if start < 0 or end < start:
        return None
    try:
        items = json.loads(text[start + len(SPAWN_OPEN) : end])
    except json.JSONDecodeError:
        return None
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
        return None
    return [item.strip() for item in items]


def join_block(tasks: list[str], results: list[str | None]) -> str:
    """What replaces a spawn block: each sub-problem with its result, or "no result"."""
    pairs = zip(tasks, results, strict=True)
    lines = [f"{n}. {task} => {result or NO_RESULT}" for n, (task, result) in enumerate(pairs, 1)]
    return "<join>\n" + "\n".join(lines) + "\n</join>\n"


async def run_thread(tree: ThreadTree, params: SpawnJoinParams, thread: Thread, depth: int, system: str) -> None:
    """Decode ``thread`` to its end under the spawn protocol, spawning and joining children on the way."""
    may_spawn = depth < params.max_depth
    for round_index in range(params.max_spawns + 1):
        spawning = may_spawn and round_index < params.max_spawns
        piece = await tree.extend(thread, system, stop=(SPAWN_CLOSE,) if spawning else ())
        if not spawning or SPAWN_OPEN not in piece:
            break
        tasks = parse_spawn(thread.text)
        thread.text = thread.text[: thread.text.rfind(SPAWN_OPEN)]
        if tasks is None:  # a broken block: cut it, and the thread goes on alone
            thread.protocol, may_spawn = "malformed spawn block; continued alone", False
            continue
        thread.protocol = "spawned"
        tasks = tasks[: params.max_children]

        async def solve(index: int, child: Thread) -> None:
            await run_thread(tree, params, child, depth + 1, CHILD_PROMPT)

        results = await tree.run_children(thread, tasks, solve)
        thread.text += join_block(tasks, results)
    thread.result = child_result(thread.text) if depth > 0 else extract_answer(thread.text)
    thread.finish()


@register("spawn_join", SpawnJoinParams)
async def spawn_join(question: str, session: Session, params: SpawnJoinParams) -> StrategyResult:
    """Parallel sub-problems: spawn child threads, run them concurrently, join their results, resume."""
    tree = ThreadTree(session, params)
    root = tree.new_thread(question)
    origin, exhausted = root.started, False
    task = parse_countdown(question) if params.decomposition == "countdown" else None
    try:
        if task is not None:
            await run_split(tree, root, task, params.max_children, PARENT_PROMPT)
        else:
            if params.decomposition == "countdown":
                root.protocol = "not a Countdown problem; the model decomposes"
            await run_thread(tree, params, root, 0, PARENT_PROMPT)
    except BudgetExceededError:
        exhausted = True
        root.finish("out of budget")
        if task is None:
            root.result = root.result or extract_answer(root.text)
    critical_path = root.critical_path_tokens(params.concurrent)
    session.meter.note_critical_path(critical_path)
    trace = {
        "threads": root.to_trace(origin),
        "critical_path_tokens": critical_path,
        "thread_tokens": root.all_tokens(),
        "protocol": root.protocol,
    }
    cut_off = exhausted or root.tokens >= params.thread_max_tokens
    return StrategyResult(answer=root.result, output=root.text, best_so_far=exhausted, cut_off=cut_off, trace=trace)

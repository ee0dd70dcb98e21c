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
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.backends.base import SamplingSettings
from orchestrator.context import ReasoningContext
from orchestrator.errors import BudgetExceededError, TTCError
from strategies.base import StrategyResult, register
from strategies.countdown_split import FirstStep, first_steps, parse_countdown
from verifiers.extraction import extract_answer, last_expression
from verifiers.outcome import countdown_correct

SPAWN_OPEN, SPAWN_CLOSE = "<spawn>", "</spawn>"
NO_RESULT = "no result"
PARENT_PROMPT = (
    "Solve the problem step by step. If it splits into independent sub-problems, you may hand them "
    f'to helpers: write {SPAWN_OPEN}["first sub-problem", "second sub-problem"]{SPAWN_CLOSE} (a JSON list of '
    "self-contained questions) and stop. Their results come back as <join>...</join>; then continue. "
    "Finish with 'The answer is <answer>.'"
)
CHILD_PROMPT = "Solve this sub-problem briefly. Finish with 'Result: <result>'."
_RESULT = re.compile(r"Result:\s*(.+)", re.IGNORECASE)


class SpawnJoinParams(BaseModel):
    """Parameters of ``spawn_join``."""

    model_config = ConfigDict(extra="forbid")

    max_children: int = Field(4, ge=1, le=16, description="sub-problems run per spawn (extra ones are dropped)")
    max_depth: int = Field(1, ge=0, le=3, description="nesting levels: 1 = children may not spawn again")
    max_spawns: int = Field(2, ge=1, le=8, description="spawn rounds per thread")
    thread_max_tokens: int = Field(384, ge=16, le=8192, description="completion tokens per thread")
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    decomposition: Literal["model", "countdown"] = Field(
        "model", description="model: the model writes spawn blocks; countdown: one child per first operation"
    )
    concurrent: bool = Field(True, description="false runs the children one after another (the serial baseline)")
    child_samples: int = Field(
        1, ge=1, le=16, description="countdown: samples per child; the first whose expression checks is kept"
    )

    @model_validator(mode="after")
    def _samples_need_temperature(self) -> SpawnJoinParams:
        if self.child_samples > 1 and self.temperature == 0.0:
            raise ValueError("child_samples > 1 needs temperature > 0 (greedy samples would all be the same)")
        return self


SolveChild = Callable[[int, "Thread"], Awaitable[None]]


@dataclass
class Thread:
    """One thread of the tree: its task, what it wrote, what it cost, and its children per round."""

    id: str
    task: str
    text: str = ""
    tokens: int = 0
    longest_try: int | None = None  # a thread that sampled several tries at once: the longest one
    result: str | None = None
    status: str = "running"
    protocol: str = "no spawn"
    rounds: list[list[Thread]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def critical_path_tokens(self, concurrent: bool = True) -> int:
        """Own tokens plus, per spawn round, the longest child's critical path (children run
        concurrently) or the sum of all of them (children run one after another)."""
        combine = max if concurrent else sum
        own = self.longest_try if self.longest_try is not None else self.tokens
        return own + sum(
            combine([c.critical_path_tokens(concurrent) for c in round_]) for round_ in self.rounds if round_
        )

    def all_tokens(self) -> int:
        return self.tokens + sum(c.all_tokens() for round_ in self.rounds for c in round_)

    def to_trace(self, origin: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "status": self.status,
            "protocol": self.protocol,
            "result": self.result,
            "tokens": self.tokens,
            "text": self.text,
            "start_s": round(self.started - origin, 4),
            "end_s": round((self.ended or self.started) - origin, 4),
            "rounds": [[c.to_trace(origin) for c in round_] for round_ in self.rounds],
        }


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


def child_result(text: str) -> str | None:
    """A child's result: its ``Result:`` line, else its extracted answer."""
    if found := _RESULT.findall(text):
        return found[-1].strip().rstrip(".").strip() or None
    return extract_answer(text)


def child_expression(text: str) -> str | None:
    """A Countdown child's expression: its ``Result:`` line if that is one, else the last one it wrote
    (small models often state the target, ``Result: 9``, after writing the expression)."""
    stated = child_result(text)
    return last_expression(stated or "") or last_expression(text)


class SpawnJoin:
    """Runs one request's thread tree."""

    def __init__(self, ctx: ReasoningContext, params: SpawnJoinParams) -> None:
        self.ctx = ctx
        self.params = params
        self.model_spawns = True  # false under an imposed split: children do not spawn again
        self._next_id = 0

    def new_thread(self, task: str) -> Thread:
        self._next_id += 1
        return Thread(id=f"t{self._next_id}", task=task)

    async def run_thread(self, thread: Thread, depth: int, system: str) -> None:
        """Decode ``thread`` to its end, spawning and joining children on the way."""
        thread.started = time.monotonic()
        may_spawn = depth < self.params.max_depth and self.model_spawns
        for round_index in range(self.params.max_spawns + 1):
            spawning = may_spawn and round_index < self.params.max_spawns
            piece = await self._continue(thread, system, stop=(SPAWN_CLOSE,) if spawning else ())
            if not spawning or SPAWN_OPEN not in piece:
                break
            tasks = parse_spawn(thread.text)
            thread.text = thread.text[: thread.text.rfind(SPAWN_OPEN)]
            if tasks is None:  # a broken block: cut it, and the thread goes on alone
                thread.protocol, may_spawn = "malformed spawn block; continued alone", False
                continue
            thread.protocol = "spawned"
            results = await self.run_children(thread, tasks[: self.params.max_children], depth + 1)
            thread.text += join_block(tasks[: self.params.max_children], results)
        thread.result = child_result(thread.text) if depth > 0 else extract_answer(thread.text)
        thread.status, thread.ended = "done", time.monotonic()

    async def run_children(
        self, parent: Thread, tasks: list[str], depth: int, solve: SolveChild | None = None
    ) -> list[str | None]:
        """Every task as a child thread, concurrently (or one after another); failures are None.
        ``solve(index, child)`` runs one child (default: an ordinary thread that may spawn again)."""
        children = [self.new_thread(task) for task in tasks]
        parent.rounds.append(children)
        await self.ctx.emit({"type": "spawn", "parent": parent.id, "children": [c.id for c in children]})

        async def run_child(index: int, child: Thread) -> None:
            try:
                if solve is None:
                    await self.run_thread(child, depth, CHILD_PROMPT)
                else:
                    await solve(index, child)
            except BudgetExceededError:
                child.status, child.ended = "out of budget", time.monotonic()
            except TTCError as error:  # the engine refused or failed this child: the others go on
                child.status, child.ended = f"failed: {error.code}", time.monotonic()

        if self.params.concurrent:
            async with anyio.create_task_group() as group:
                for index, child in enumerate(children):
                    group.start_soon(run_child, index, child)
        else:
            for index, child in enumerate(children):
                await run_child(index, child)
        await self.ctx.emit(
            {"type": "join", "parent": parent.id, "results": {c.id: c.result or NO_RESULT for c in children}}
        )
        return [c.result if c.status == "done" else None for c in children]

    async def _continue(self, thread: Thread, system: str, stop: tuple[str, ...]) -> str:
        left = self.params.thread_max_tokens - thread.tokens
        if left < 1:
            return ""
        prompt = self.ctx.renderer.render_question(thread.task, system=system, partial_assistant=thread.text or None)
        sampling = SamplingSettings(
            n=1, temperature=self.params.temperature, max_tokens=left, stop=stop, include_stop_str_in_output=True
        )
        [result] = await self.ctx.generate([prompt], sampling)
        completion = result.completions[0]
        thread.text += completion.text
        thread.tokens += len(completion.token_ids)
        return completion.text

    async def solve_countdown_child(self, child: Thread, step: FirstStep, numbers: list[int], target: int) -> None:
        """One Countdown child: ``child_samples`` tries at its smaller task in one request (they
        share the prompt's KV); the first whose expression, composed with ``step``, checks is kept."""
        child.started = time.monotonic()
        prompt = self.ctx.renderer.render_question(child.task, system=CHILD_PROMPT)
        sampling = SamplingSettings(
            n=self.params.child_samples, temperature=self.params.temperature, max_tokens=self.params.thread_max_tokens
        )
        [result] = await self.ctx.generate([prompt], sampling)
        tries = [(c.text, child_expression(c.text)) for c in result.completions]
        child.tokens = sum(len(c.token_ids) for c in result.completions)
        child.longest_try = max(len(c.token_ids) for c in result.completions)
        checks = [t for t in tries if t[1] and countdown_correct(step.compose(t[1]), numbers, target)]
        child.text, child.result = (checks or [t for t in tries if t[1]] or tries)[0]
        child.status, child.ended = "done", time.monotonic()

    async def run_countdown(self, root: Thread, first: list[FirstStep], target: int, numbers: list[int]) -> None:
        """The imposed split: children per first operation, then the parent answers from the join."""
        tasks = [step.rest.question() for step in first]
        root.text = f"Splitting by the first operation.\n{SPAWN_OPEN}{json.dumps(tasks)}{SPAWN_CLOSE}"
        root.protocol = "countdown split"

        async def solve(index: int, child: Thread) -> None:
            await self.solve_countdown_child(child, first[index], numbers, target)

        results = await self.run_children(root, tasks, depth=1, solve=solve)
        composed = [step.compose(r) if r else None for step, r in zip(first, results, strict=True)]
        checked = [c if c and countdown_correct(c, numbers, target) else None for c in composed]
        lines = [
            f"{n}. first {step.expression} = {step.value} => {c or NO_RESULT}"
            + (f" (checks: equals {target})" if ok else "")
            for n, (step, c, ok) in enumerate(zip(first, composed, checked, strict=True), 1)
        ]
        root.text = root.text[: root.text.rfind(SPAWN_OPEN)] + "<join>\n" + "\n".join(lines) + "\n</join>\n"
        verified = next((c for c in checked if c), None)
        root.result = verified or next((c for c in composed if c), None)  # unverified: still an expression
        if verified is not None:  # the answer is checked: resuming the parent would only restate it
            root.text += f"The answer is {verified}."
            root.status, root.ended = "done", time.monotonic()
            return
        await self._continue(root, PARENT_PROMPT, stop=())
        stated = last_expression(root.text.rsplit("</join>", 1)[-1])  # the parent's own words after the join
        root.result = stated or root.result
        root.status, root.ended = "done", time.monotonic()


@register("spawn_join", SpawnJoinParams)
async def spawn_join(question: str, ctx: ReasoningContext, params: SpawnJoinParams) -> StrategyResult:
    """Parallel sub-problems: spawn child threads, run them concurrently, join their results, resume."""
    tree = SpawnJoin(ctx, params)
    root = tree.new_thread(question)
    origin, exhausted = root.started, False
    task = parse_countdown(question) if params.decomposition == "countdown" else None
    try:
        if task is not None:
            tree.model_spawns = False
            first = first_steps(task, params.max_children)
            await tree.run_countdown(root, first, task.target, list(task.numbers))
        else:
            if params.decomposition == "countdown":
                root.protocol = "not a Countdown problem; the model decomposes"
            await tree.run_thread(root, 0, PARENT_PROMPT)
    except BudgetExceededError:
        exhausted, root.status, root.ended = True, "out of budget", time.monotonic()
        if task is None:
            root.result = root.result or extract_answer(root.text)
    critical_path = root.critical_path_tokens(params.concurrent)
    ctx.meter.note_critical_path(critical_path)
    trace = {
        "threads": root.to_trace(origin),
        "critical_path_tokens": critical_path,
        "thread_tokens": root.all_tokens(),
        "protocol": root.protocol,
    }
    return StrategyResult(answer=root.result, output=root.text, best_so_far=exhausted, trace=trace)

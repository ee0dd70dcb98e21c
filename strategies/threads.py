"""A tree of reasoning threads: the machinery ``spawn_join`` runs on.

A thread is one chain of decoding with its own task. A parent hands sub-problems to child
threads, which run concurrently (one task group, their engine requests batched together
under the request's tree id) or one after another, and share the request's budget meter.
A child that fails or runs out of budget is "no result" to its parent; it never hangs it,
and a parent that is cancelled or fails cancels its children.

Every thread's tokens are charged as usual; the tree also knows its critical path: the
tokens of the longest chain of threads that had to run one after another.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.errors import BudgetExceededError, TTCError
from orchestrator.core.session import Session
from verifiers.extraction import extract_answer

NO_RESULT = "no result"
CHILD_PROMPT = "Solve this sub-problem briefly. Finish with 'Result: <result>'."
_RESULT = re.compile(r"Result:\s*(.+)", re.IGNORECASE)


class ThreadParams(BaseModel):
    """How each thread decodes, and how children run."""

    model_config = ConfigDict(extra="forbid")

    thread_max_tokens: int = Field(384, ge=16, le=8192, description="completion tokens per thread")
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    concurrent: bool = Field(True, description="false runs the children one after another (the serial baseline)")
    child_samples: int = Field(
        1, ge=1, le=16, description="countdown: samples per child; the first whose expression checks is kept"
    )

    @model_validator(mode="after")
    def _samples_need_temperature(self) -> ThreadParams:
        if self.child_samples > 1 and self.temperature == 0.0:
            raise ValueError("child_samples > 1 needs temperature > 0 (greedy samples would all be the same)")
        return self


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

    def finish(self, status: str = "done") -> None:
        self.status, self.ended = status, time.monotonic()

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


def child_result(text: str) -> str | None:
    """A child's result: its ``Result:`` line, else its extracted answer."""
    if found := _RESULT.findall(text):
        return found[-1].strip().rstrip(".").strip() or None
    return extract_answer(text)


SolveChild = Callable[[int, Thread], Awaitable[None]]
"""Runs the ``index``-th child of a round to its end, filling in its text and result."""


class ThreadTree:
    """Creates threads, extends them, and runs rounds of children for one request."""

    def __init__(self, session: Session, params: ThreadParams) -> None:
        self.session = session
        self.params = params
        self._next_id = 0

    def new_thread(self, task: str) -> Thread:
        self._next_id += 1
        return Thread(id=f"t{self._next_id}", task=task)

    async def run_children(self, parent: Thread, tasks: list[str], solve: SolveChild) -> list[str | None]:
        """Every task as a child thread of ``parent``, concurrently (or one after another);
        the children's results in task order, None for a child that failed."""
        children = [self.new_thread(task) for task in tasks]
        parent.rounds.append(children)
        await self.session.emit({"type": "spawn", "parent": parent.id, "children": [c.id for c in children]})

        async def run_child(index: int, child: Thread) -> None:
            child.started = time.monotonic()
            try:
                await solve(index, child)
            except BudgetExceededError:
                child.finish("out of budget")
            except TTCError as error:  # the engine refused or failed this child: the others go on
                child.finish(f"failed: {error.code}")

        if self.params.concurrent:
            async with anyio.create_task_group() as group:
                for index, child in enumerate(children):
                    group.start_soon(run_child, index, child)
        else:
            for index, child in enumerate(children):
                await run_child(index, child)
        results = {c.id: c.result or NO_RESULT for c in children}
        await self.session.emit({"type": "join", "parent": parent.id, "results": results})
        return [c.result if c.status == "done" else None for c in children]

    async def extend(self, thread: Thread, system: str, stop: tuple[str, ...] = ()) -> str:
        """Decode more of ``thread`` (up to its token allowance, or a stop string); returns the new text."""
        left = self.params.thread_max_tokens - thread.tokens
        if left < 1:
            return ""
        prompt = self.session.renderer.render_question(
            thread.task, system=system, partial_assistant=thread.text or None
        )
        sampling = SamplingSettings(
            n=1, temperature=self.params.temperature, max_tokens=left, stop=stop, include_stop_str_in_output=True
        )
        [result] = await self.session.generate([prompt], sampling)
        completion = result.completions[0]
        thread.text += completion.text
        thread.tokens += len(completion.token_ids)
        return completion.text

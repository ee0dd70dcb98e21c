"""Sleep-time compute: think about a context before any question arrives.

Sleep phase (``precompute_memory``): the model is shown the context alone, asked to
predict likely questions and work out their answers with the arithmetic written out, one
``Q: ... A: ...`` note per line; every note is checked by a verifier (the calculator by
default: a note whose arithmetic is wrong is dropped) and the kept notes become the
memory. Further rounds show the model its notes so far and ask for more, until the
rounds or the sleep budget run out. The memory is capped in length.

Query phase (``with_memory``): the question is asked over the context plus the memory,
with the model told to use the notes rather than recompute them; any strategy answers it.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.backends.base import SamplingSettings
from orchestrator.context import ReasoningContext
from orchestrator.errors import BudgetExceededError
from verifiers.base import ScoreRequest, VerifierName, get_verifier

SLEEP_SYSTEM = "You study a situation before anyone asks about it, and write down what will be useful."
FIRST_ROUND = (
    "New situation: {context}\n\nNo question has been asked yet. Write the questions someone is likely to ask "
    "about it and answer each, with the arithmetic written out, one per line, as 'Q: <question> A: <working> = "
    "<answer>'."
)
NEXT_ROUND = (
    "New situation: {context}\n\nYour notes so far:\n{memory}\n\nWrite more questions someone is likely to ask, "
    "with their answers worked out, in the same one-line 'Q: ... A: ...' format."
)
QUERY_NOTES = "Notes worked out in advance (checked; use them instead of recomputing):"
_NOTE = re.compile(r"^\s*(?:\d+[.)]\s*)?Q:\s*(.+?)\s+A:\s*(.+?)\s*$")
WRONG_ARITHMETIC = 0.1  # the calculator scores a wrong equation 0.05


class SleepParams(BaseModel):
    """How to precompute a context's memory."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(2, ge=1, le=8, description="rounds of note-taking (each sees the notes so far)")
    round_max_tokens: int = Field(320, ge=32, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    verifier: VerifierName = Field("arith_steps", description="checks each note; notes it finds wrong are dropped")
    memory_max_chars: int = Field(5000, ge=100, le=20_000)


class Memory(BaseModel):
    """The notes kept, and what happened to the ones dropped."""

    text: str
    notes: list[str]
    dropped: list[str]
    rounds: int


def parse_notes(text: str) -> list[str]:
    """``Q: ... A: ...`` lines of the model's text, normalised (numbering removed).

    Example: ``parse_notes("1. Q: How many pens? A: 3 + 4 = 7")`` is ``["Q: How many pens? A: 3 + 4 = 7"]``.
    """
    notes = []
    for line in text.splitlines():
        if match := _NOTE.match(line):
            notes.append(f"Q: {match.group(1)} A: {match.group(2)}")
    return notes


async def precompute_memory(context: str, ctx: ReasoningContext, params: SleepParams) -> Memory:
    """Take notes on ``context`` in rounds, keep the ones the verifier does not reject."""
    verifier = get_verifier(params.verifier)
    kept: list[str] = []
    dropped: list[str] = []
    rounds = 0
    try:
        for _ in range(params.rounds):
            memory = "\n".join(kept)
            ask = NEXT_ROUND.format(context=context, memory=memory) if kept else FIRST_ROUND.format(context=context)
            prompt = ctx.renderer.render_question(ask, system=SLEEP_SYSTEM)
            sampling = SamplingSettings(n=1, temperature=params.temperature, max_tokens=params.round_max_tokens)
            [result] = await ctx.generate([prompt], sampling)
            rounds += 1
            fresh = [note for note in parse_notes(result.completions[0].text) if note not in kept]
            if not fresh:
                break  # nothing new: the notes are done
            scores = await ctx.score(verifier, [ScoreRequest(context, (note,)) for note in fresh])
            kept += [note for note, score in zip(fresh, scores, strict=True) if score > WRONG_ARITHMETIC]
            dropped += [note for note, score in zip(fresh, scores, strict=True) if score <= WRONG_ARITHMETIC]
            await ctx.emit({"type": "sleep_round", "round": rounds, "kept": len(kept), "dropped": len(dropped)})
    except BudgetExceededError:
        pass  # the sleep budget is spent: the notes so far are the memory
    text = _capped("\n".join(kept), params.memory_max_chars)
    return Memory(text=text, notes=kept, dropped=dropped, rounds=rounds)


def _capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)  # whole notes only
    return text[: cut if cut > 0 else limit].rstrip()


def with_memory(context: str, memory: str | None, question: str) -> str:
    """The question as asked over a context, with its memory when there is one."""
    parts = [context]
    if memory:
        parts.append(f"{QUERY_NOTES}\n{memory}")
    parts.append(f"Question: {question}")
    return "\n\n".join(parts)

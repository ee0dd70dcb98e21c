"""Sleep-time compute: think about a context before any question arrives.

Sleep phase (``precompute_memory``): the model is shown the context alone, asked to
predict likely questions and work out their answers with the arithmetic written out, as
``Q: ...`` / ``A: ...`` notes; every note is checked by a verifier (the calculator by
default) and only notes it confirms are kept (wrong arithmetic, or none to check, is
dropped); one note per question. The kept notes become the memory. Further rounds show
the model its notes so far and ask for more, until the rounds or the sleep budget run out.
The memory is capped in length.

Query phase (``with_memory``): the question is asked over the context plus the memory,
with the model told to use the notes rather than recompute them; any strategy answers it.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.errors import BudgetExceededError, PromptTooLongError
from orchestrator.core.session import Session
from orchestrator.core.verification import ScoreRequest
from strategies.base import StrategyResult, register
from verifiers.registry import VerifierName

SLEEP_SYSTEM = "You study a situation before anyone asks about it, and write down what will be useful."
FIRST_ROUND = (
    "New situation: {context}\n\nNo question has been asked yet. Write the questions someone is likely to ask "
    "about it and answer each with the arithmetic written out, as 'Q: <question>' then 'A: <working> = "
    "<answer>'."
)
NEXT_ROUND = (
    "New situation: {context}\n\nYour notes so far:\n{memory}\n\nWrite more questions someone is likely to ask, "
    "with their answers worked out, in the same 'Q: ...' then 'A: ...' format."
)
QUERY_NOTES = "Notes worked out in advance (their arithmetic checked; use them instead of recomputing):"
_ONE_LINE = re.compile(r"^(?:\d+[.)]\s*)?Q:\s*(.+?)\s+A:\s*(.+?)$")
_QUESTION = re.compile(r"^(?:\d+[.)]\s*)?Q:\s*(.+?)$")
_ANSWER = re.compile(r"^A:\s*(.+?)$")
_NUMBERING = re.compile(r"^\d+[.)]\s*")
KEEP_ABOVE = 0.5  # verifiers score 0.5 when they cannot tell: a note is kept only if it checks out


class SleepParams(BaseModel):
    """How to precompute a context's memory."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(2, ge=1, le=8, description="rounds of note-taking (each sees the notes so far)")
    round_max_tokens: int = Field(320, ge=32, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    verifier: VerifierName = Field("arith_steps", description="checks each note; only notes it confirms are kept")
    memory_max_chars: int = Field(5000, ge=100, le=20_000)


class Memory(BaseModel):
    """The notes kept, and what happened to the ones dropped."""

    text: str
    notes: list[str]
    dropped: list[str]
    rounds: int


def parse_notes(text: str) -> list[str]:
    """``Q: ... A: ...`` notes in the model's text, on one line or with ``A:`` on the next line,
    normalised (numbering removed).

    Example: ``parse_notes("Q: 1. How many pens?\\nA: 3 + 4 = 7")`` is ``["Q: How many pens? A: 3 + 4 = 7"]``.
    """
    notes, question = [], None
    for line in (raw.strip() for raw in text.splitlines()):
        if match := _ONE_LINE.match(line):
            notes.append(_note(match.group(1), match.group(2)))
            question = None
        elif match := _QUESTION.match(line):
            question = match.group(1)
        elif (match := _ANSWER.match(line)) and question is not None:
            notes.append(_note(question, match.group(1)))
            question = None
    return notes


def _note(question: str, answer: str) -> str:
    return f"Q: {_NUMBERING.sub('', question).strip()} A: {answer.strip()}"


async def precompute_memory(context: str, session: Session, params: SleepParams) -> Memory:
    """Take notes on ``context`` in rounds, keep the ones the verifier does not reject."""
    verifier = session.verifier(params.verifier)
    kept: list[str] = []
    dropped: list[str] = []
    rounds = 0
    try:
        for _ in range(params.rounds):
            memory = "\n".join(kept)
            ask = NEXT_ROUND.format(context=context, memory=memory) if kept else FIRST_ROUND.format(context=context)
            prompt = session.renderer.render_question(ask, system=SLEEP_SYSTEM)
            sampling = SamplingSettings(n=1, temperature=params.temperature, max_tokens=params.round_max_tokens)
            [result] = await session.generate([prompt], sampling)
            rounds += 1
            asked = {_question_of(note) for note in kept + dropped}
            fresh = []
            for note in parse_notes(result.completions[0].text):
                if _question_of(note) not in asked:  # one note per question: the first answer to it
                    asked.add(_question_of(note))
                    fresh.append(note)
            if not fresh:
                break  # nothing new: the notes are done
            scores = await session.score(verifier, [ScoreRequest(context, (note,)) for note in fresh])
            kept += [note for note, score in zip(fresh, scores, strict=True) if score > KEEP_ABOVE]
            dropped += [note for note, score in zip(fresh, scores, strict=True) if score <= KEEP_ABOVE]
            await session.emit({"type": "sleep_round", "round": rounds, "kept": len(kept), "dropped": len(dropped)})
    except BudgetExceededError:
        pass  # the sleep budget is spent: the notes so far are the memory
    except PromptTooLongError:
        if rounds == 0:
            raise
        # the notes outgrew the model's context: keep what fits so far
    text = _capped("\n".join(kept), params.memory_max_chars)
    return Memory(text=text, notes=kept, dropped=dropped, rounds=rounds)


@register("sleep_time", SleepParams)
async def sleep_time(context: str, session: Session, params: SleepParams) -> StrategyResult:
    """Sleep-time precompute: checked notes on a context, before any question (what a context's job runs)."""
    memory = await precompute_memory(context, session, params)
    trace = {"notes": memory.notes, "dropped": memory.dropped, "rounds": memory.rounds}
    return StrategyResult(answer=None, output=memory.text, trace=trace)


def _question_of(note: str) -> str:
    return note.split(" A: ", 1)[0].lower()


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

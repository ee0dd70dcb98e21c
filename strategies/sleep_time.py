"""Sleep-time compute: think about a context before any question arrives.

Sleep phase (``precompute_memory``), in rounds, each two batched requests:

1. *propose*: the model, shown the context (and the facts kept so far), writes questions someone
   is likely to ask that need a calculation;
2. *solve*: each new question is answered ``samples`` times, step by step, as any question is.

A question becomes a fact (``Q: <question> A: <working> → <answer>``) only if at least ``agree``
of its samples give the same answer, and one of those samples' working checks: every equation
holds, every operand is grounded in the context, an earlier equation or a kept fact
(``strategies.facts``), and the answer is what the working computes. A ``judge`` verifier may then
score it too. Later rounds see the kept facts and build on them. Rounds stop when one adds
nothing, or the rounds or the sleep budget run out. The kept facts, one per line, are the memory;
``Memory.stages`` counts what each filter let through, so the losses are visible.

Re-sleep after a context grows: ``prior_facts`` (set by the service, never by a client) are the
old memory; those whose working still checks and is grounded in the new text are kept without
asking again, and the first round is pointed at what changed.

Query phase (``with_memory``): the question is asked over the context plus the facts chosen for
it (``service.sleep`` retrieves the ones closest in meaning); any strategy answers it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.errors import BudgetExceededError, PromptTooLongError
from orchestrator.core.session import Session
from orchestrator.core.verification import ScoreRequest
from strategies.base import StrategyResult, register
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from strategies.facts import Equation, chain_grounded, context_numbers, equations_in
from verifiers.extraction import extract_answer
from verifiers.registry import VerifierName

PROPOSE_SYSTEM = "You read a situation before anyone asks about it and foresee the questions it raises."
PROPOSE = (
    "Situation: {context}\n\nWrite {count} different questions someone is likely to ask about this situation, "
    "each needing a calculation with its numbers (totals, differences, what is left, amounts per person, "
    "costs). Write one question per line and nothing else."
)
PROPOSE_MORE = (
    "Situation: {context}\n\nAlready worked out:\n{memory}\n\nWrite {count} more questions about this "
    "situation that need a calculation, ones not answered above (they may build on those answers). "
    "One question per line and nothing else."
)
SOLVE_SYSTEM = DEFAULT_SYSTEM_PROMPT  # asked for brevity, the 0.5B model answered far worse
CHANGED = "\n\nThe situation has just changed: {changed}\nAsk about what follows from the change."
QUERY_NOTES = "Facts worked out in advance (their arithmetic checked; use them instead of recomputing):"
STAGES = ("proposed", "answered", "agreed", "checked", "grounded", "judged", "kept")
_QUESTION_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*(?:Q(?:uestions?)?\s*\d*\s*:\s*)*(?P<question>[^?\n]{8,300}\?)")
_FACT_LINE = re.compile(r"^Q: (?P<question>.+?) A: (?P<working>.*?)\s*→\s*(?P<answer>\S+)$")


class SleepParams(BaseModel):
    """How to precompute a context's memory."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(2, ge=1, le=8, description="rounds of propose-and-solve (each sees the facts kept so far)")
    questions: int = Field(6, ge=1, le=20, description="questions the model is asked to propose per round")
    samples: int = Field(4, ge=1, le=16, description="answers sampled per proposed question (one batched request)")
    agree: int = Field(3, ge=1, le=16, description="samples that must give the same answer to keep it")
    round_max_tokens: int = Field(384, ge=32, le=4096, description="tokens per proposal and per answer")
    temperature: float = Field(0.7, ge=0.0, le=5.0)
    judge: VerifierName | None = Field(None, description="a verifier that must also score each fact above judge_above")
    judge_above: float = Field(
        0.39,
        ge=0.0,
        le=1.0,
        description="the judge's bar: fitted for self_judge on the default model's dev contexts "
        "(benchmarks/sleep_time_filters.py); refit it for another judge or model",
    )
    max_facts: int = Field(40, ge=1, le=200)
    retrieve: int = Field(6, ge=0, le=200, description="facts shown with each question, closest first (0: all)")
    memory_max_chars: int = Field(5000, ge=100, le=20_000)
    prior_facts: list[str] = Field(
        default_factory=list, max_length=200, description="set by the service on a re-sleep: the old memory"
    )
    changed: str | None = Field(None, max_length=20_000, description="set by the service on a re-sleep: the new text")

    def parallel_streams(self) -> int:
        return self.questions * self.samples

    def full_cost(self) -> int:
        """The completion tokens every round can spend at most: its proposal and every answer at full
        length. Example: ``SleepParams(rounds=1, questions=2, samples=4, round_max_tokens=100).full_cost() == 900``."""
        return self.rounds * self.round_max_tokens * (1 + self.questions * self.samples)


SERVICE_ONLY = ("prior_facts", "changed")
"""``SleepParams`` fields only the service sets (a client naming them is refused)."""


@dataclass(frozen=True)
class KeptFact:
    """A question about the context, its answer, and the checked working that gives it."""

    question: str
    answer: str
    working: tuple[Equation, ...]

    def line(self) -> str:
        """The fact as stored and shown. Example: ``Q: How many pens? A: 12 + 7 = 19 → 19``."""
        return f"Q: {self.question} A: {'; '.join(eq.line() for eq in self.working)} → {self.answer}"

    @property
    def value(self) -> Fraction | None:
        try:
            return Fraction(self.answer)
        except (ValueError, ZeroDivisionError):
            return None


class Candidate(BaseModel):
    """An answered question as the filters saw it: its most common answer, how many of the samples
    gave it, whether one of their workings checks and is grounded, and the judge's score (only facts
    that passed every other filter are judged). What a filter threshold is fitted on
    (``harness.fact_filter``)."""

    question: str
    answer: str
    votes: int
    samples: int
    checked: bool
    grounded: bool
    judge: float | None = None


class Memory(BaseModel):
    """The facts kept, the questions dropped, every answered question as the filters saw it, and how
    many each filter let through."""

    text: str
    facts: list[str]
    dropped: list[str]
    candidates: list[Candidate] = Field(default_factory=list)
    rounds: int
    stages: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(STAGES, 0))


async def precompute_memory(context: str, session: Session, params: SleepParams) -> Memory:
    """Propose, solve, check and keep the facts ``context`` implies, in rounds (see the module docstring)."""
    stated = context_numbers(context)
    kept = revalidated(params.prior_facts, stated)
    stages = dict.fromkeys(STAGES, 0)
    dropped: list[str] = []
    candidates: list[Candidate] = []
    rounds = 0
    try:
        for _ in range(params.rounds):
            changed = params.changed if rounds == 0 else None
            asked = {_normal(fact.question) for fact in kept} | {_normal(question) for question in dropped}
            proposed = [q for q in await _proposed(context, kept, params, changed, session) if _normal(q) not in asked]
            rounds += 1
            if not proposed:
                break  # nothing new to ask: the memory is done
            known = stated | {value for fact in kept if (value := fact.value) is not None}
            fresh = await _solved(context, proposed, known, params, session, stages, candidates)
            fresh = await _judged(fresh, params, session, context, stages, candidates)
            room = params.max_facts - len(kept)
            kept += fresh[:room]
            dropped += [q for q in proposed if q not in {fact.question for fact in fresh}]
            await session.emit({"type": "sleep_round", "round": rounds, "kept": len(kept), "stages": dict(stages)})
            if not fresh or room <= len(fresh):
                break  # nothing new, or the memory is full
    except BudgetExceededError:
        pass  # the sleep budget is spent: the facts so far are the memory
    except PromptTooLongError:
        if rounds == 0:
            raise
        # the facts outgrew the model's context: keep what fits so far
    stages["kept"] = len(kept)
    lines = [fact.line() for fact in kept]
    text = _capped("\n".join(lines), params.memory_max_chars)
    return Memory(text=text, facts=lines, dropped=dropped, candidates=candidates, rounds=rounds, stages=stages)


def revalidated(lines: list[str], stated: set[Fraction]) -> list[KeptFact]:
    """The prior facts that still hold over the new text, in order: each one's working checks and
    is grounded in numbers the text states or answers of earlier prior facts that held."""
    kept: list[KeptFact] = []
    for line in lines:
        match = _FACT_LINE.match(line.strip())
        if match is None:
            continue
        working = tuple(equations_in(match["working"]))
        known = stated | {value for fact in kept if (value := fact.value) is not None}
        fact = KeptFact(match["question"], match["answer"], working)
        if _supports(working, fact.answer, known):
            kept.append(fact)
    return kept


async def _proposed(
    context: str, kept: list[KeptFact], params: SleepParams, changed: str | None, session: Session
) -> list[str]:
    """The questions the model proposes this round, distinct, in order."""
    if kept:
        memory = "\n".join(fact.line() for fact in kept)
        ask = PROPOSE_MORE.format(context=context, memory=memory, count=params.questions)
    else:
        ask = PROPOSE.format(context=context, count=params.questions)
    if changed:
        ask += CHANGED.format(changed=changed)
    prompt = session.renderer.render_question(ask, system=PROPOSE_SYSTEM)
    sampling = SamplingSettings(n=1, temperature=params.temperature, max_tokens=params.round_max_tokens)
    [result] = await session.generate([prompt], sampling)
    questions = [match["question"].strip() for line in result.completions[0].text.splitlines()
                 if (match := _QUESTION_LINE.match(line))]  # fmt: skip
    return list(dict.fromkeys(questions))[: params.questions]


async def _solved(
    context: str, questions: list[str], known: set[Fraction], params: SleepParams, session: Session,
    stages: dict[str, int], candidates: list[Candidate],
) -> list[KeptFact]:  # fmt: skip
    """Each question answered ``samples`` times in one batched request; the ones that pass every check.
    Every answered question goes to ``candidates`` with what each check said of it.

    Only as many questions are asked as the budget affords at full length: a budget spread thin
    would cut every answer short, and a cut answer's last number is not its answer.
    """
    remaining = session.meter.remaining_tokens()
    if remaining is not None:
        questions = questions[: remaining // (params.samples * params.round_max_tokens)]
        if not questions:
            raise session.meter.exhausted("tokens", "the sleep budget cannot afford another question's answers")
    prompts = [session.renderer.render_question(f"{context}\n\nQuestion: {q}", system=SOLVE_SYSTEM)
               for q in questions]  # fmt: skip
    sampling = SamplingSettings(n=params.samples, temperature=params.temperature, max_tokens=params.round_max_tokens)
    results = await session.generate(prompts, sampling)
    kept = []
    stages["proposed"] += len(questions)
    for question, result in zip(questions, results, strict=True):
        texts = [completion.text for completion in result.completions]
        answers = [extract_answer(c.text) if c.finish_reason != "length" else None for c in result.completions]
        votes = Counter(answer for answer in answers if answer is not None)
        if not votes:
            continue
        answer, count = votes.most_common(1)[0]
        workings = [equations_in(text) for text, said in zip(texts, answers, strict=True) if said == answer]
        checked = [working for working in workings if working and all(eq.checks() for eq in working)]
        grounded = [working for working in checked if _supports(tuple(working), answer, known)]
        candidates.append(Candidate(question=question, answer=answer, votes=count, samples=len(texts),
                                    checked=bool(checked), grounded=bool(grounded)))  # fmt: skip
        agreed = count >= min(params.agree, len(texts))
        stages["answered"] += 1  # the filters in order, each counted (a grounded working has checked)
        stages["agreed"] += agreed
        stages["checked"] += agreed and bool(checked)
        stages["grounded"] += agreed and bool(grounded)
        if agreed and grounded:
            kept.append(KeptFact(question, answer, tuple(min(grounded, key=len))))
    return kept


def _supports(working: tuple[Equation, ...], answer: str, known: set[Fraction]) -> bool:
    """The working checks, is grounded, and computes the answer (its value is one of its results)."""
    try:
        value = Fraction(answer)
    except (ValueError, ZeroDivisionError):
        return False
    return (
        bool(working)
        and all(eq.checks() for eq in working)
        and chain_grounded(working, known)
        and value in {eq.value for eq in working}
    )


async def _judged(
    facts: list[KeptFact], params: SleepParams, session: Session, context: str, stages: dict[str, int],
    candidates: list[Candidate],
) -> list[KeptFact]:  # fmt: skip
    """The facts the judge (if any) scores above ``judge_above``; each score is noted on its candidate."""
    if params.judge is not None and facts:
        verifier = session.verifier(params.judge)
        scores = await session.score(verifier, [ScoreRequest(context, (fact.line(),)) for fact in facts])
        by_question = {candidate.question: candidate for candidate in candidates}
        for fact, score in zip(facts, scores, strict=True):
            by_question[fact.question].judge = score
        facts = [fact for fact, score in zip(facts, scores, strict=True) if score > params.judge_above]
    stages["judged"] += len(facts)
    return facts


def _normal(question: str) -> str:
    return " ".join(question.lower().split())


@register("sleep_time", SleepParams)
async def sleep_time(context: str, session: Session, params: SleepParams) -> StrategyResult:
    """Sleep-time precompute: checked facts about a context, before any question (what a context's job runs)."""
    memory = await precompute_memory(context, session, params)
    candidates = [candidate.model_dump() for candidate in memory.candidates]
    trace = {"facts": memory.facts, "dropped": memory.dropped, "candidates": candidates,
             "rounds": memory.rounds, "stages": memory.stages}  # fmt: skip
    return StrategyResult(answer=None, output=memory.text, trace=trace)


def _capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)  # whole facts only
    return text[: cut if cut > 0 else limit].rstrip()


def with_memory(context: str, facts: list[str] | None, question: str) -> str:
    """The question as asked over a context, with the facts chosen for it when there are any."""
    parts = [context]
    if facts:
        parts.append(QUERY_NOTES + "\n" + "\n".join(facts))
    parts.append(f"Question: {question}")
    return "\n\n".join(parts)

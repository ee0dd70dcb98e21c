"""``best_of_n``: N complete samples, one chosen by vote or by a verifier.

Samples are drawn in waves (one batched engine request per wave, n samples sharing
the prompt's KV). With ``adaptive`` on, sampling stops as soon as the leading answer
cannot be overtaken by the samples still to come — each remaining sample can add at
most 1 to any answer's tally — or when the budget runs out.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.backends.base import SamplingSettings
from orchestrator.context import ReasoningContext
from orchestrator.errors import BudgetExceededError
from strategies.base import StrategyResult, register
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from verifiers.base import Aggregation, ScoreRequest, VerifierName, get_verifier
from verifiers.extraction import extract_answer

Selection = Literal["majority", "weighted", "argmax"]


class BestOfNParams(BaseModel):
    """Parameters of ``best_of_n``."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(8, ge=1, le=256, description="samples at most")
    selection: Selection = "majority"
    verifier: VerifierName = Field("arith_steps", description="scores samples for weighted and argmax selection")
    aggregation: Aggregation = "last"
    vote_by: Literal["exact", "meaning"] = Field(
        "exact", description="exact: equal answers vote together; meaning: answers that mean the same (embeddings)"
    )
    meaning_threshold: float = Field(0.85, gt=0.0, le=1.0, description="cosine similarity that counts as the same")
    adaptive: bool = Field(True, description="stop early once the vote is decided")
    wave_size: int = Field(4, ge=1, le=256, description="samples per wave when adaptive")
    temperature: float = Field(0.7, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=8192)
    step_delimiter: str = Field("\n\n", min_length=1, description="splits a sample into steps for the verifier")
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT

    @model_validator(mode="after")
    def _sampling_needs_temperature(self) -> BestOfNParams:
        if self.temperature == 0.0 and self.n > 1:
            raise ValueError("temperature must be > 0 when n > 1: greedy samples are all identical")
        return self


def tally(answers: list[str | None], weights: list[float]) -> dict[str, float]:
    """Total weight per distinct answer (samples without an answer do not vote)."""
    totals: dict[str, float] = defaultdict(float)
    for answer, weight in zip(answers, weights, strict=True):
        if answer is not None:
            totals[answer] += weight
    return dict(totals)


def vote_is_decided(totals: dict[str, float], remaining: int) -> bool:
    """True when no other answer can catch the leader with ``remaining`` more votes of weight <= 1.

    Example: ``vote_is_decided({"12": 5, "13": 1}, remaining=3)`` is True.
    """
    if not totals:
        return False
    ranked = sorted(totals.values(), reverse=True)
    runner_up = ranked[1] if len(ranked) > 1 else 0.0
    return ranked[0] - runner_up > remaining


@register("best_of_n", BestOfNParams)
async def best_of_n(question: str, ctx: ReasoningContext, params: BestOfNParams) -> StrategyResult:
    """N samples (in waves); pick by majority vote, verifier-weighted vote or verifier argmax."""
    uses_verifier = params.selection != "majority"
    verifier = get_verifier(params.verifier) if uses_verifier else None
    prompt = ctx.renderer.render_question(question, system=params.system_prompt)
    texts: list[str] = []
    answers: list[str | None] = []
    scores: list[float] = []
    tokens: list[int] = []
    waves: list[int] = []
    exhausted = False
    wave = params.wave_size if params.adaptive and params.selection != "argmax" else params.n
    try:
        while len(texts) < params.n:
            size = min(wave, params.n - len(texts))
            sampling = SamplingSettings(
                n=size, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens
            )
            [result] = await ctx.generate([prompt], sampling)
            new_texts = [c.text for c in result.completions]
            texts += new_texts
            tokens += [len(c.token_ids) for c in result.completions]
            answers += [_answer_of(text, params.vote_by) for text in new_texts]
            if params.vote_by == "meaning":
                answers = await canonical_by_meaning(answers, params.meaning_threshold)
            if verifier is not None:
                batch = [ScoreRequest(question, _steps(text, params.step_delimiter)) for text in new_texts]
                scores += await ctx.score(verifier, batch, params.aggregation)
            waves.append(size)
            weights = scores if params.selection == "weighted" else [1.0] * len(texts)
            await ctx.emit({"type": "wave", "samples": len(texts), "tally": tally(answers, weights)})
            if params.adaptive and vote_is_decided(tally(answers, weights), params.n - len(texts)):
                break
    except BudgetExceededError:
        exhausted = True
    return select_answer(texts, answers, scores, params.selection, exhausted, waves, tokens)


def _answer_of(text: str, vote_by: str) -> str | None:
    answer = extract_answer(text)
    if answer is None and vote_by == "meaning":  # free text: the last line is the answer
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[-1] if lines else None
    return answer


async def canonical_by_meaning(answers: list[str | None], threshold: float) -> list[str | None]:
    """Replace each answer by the first answer that means the same, so they vote together.

    Example: ``["Paris", "It is Paris.", "Rome"]`` -> ``["Paris", "Paris", "Rome"]`` (if similar enough).
    """
    from verifiers.semantic import group_by_meaning

    distinct = list(dict.fromkeys(a for a in answers if a is not None))
    labels = await group_by_meaning(distinct, threshold)
    first_of_label: dict[int, str] = {}
    for answer, label in zip(distinct, labels, strict=True):
        first_of_label.setdefault(label, answer)
    representative = {answer: first_of_label[label] for answer, label in zip(distinct, labels, strict=True)}
    return [representative[a] if a is not None else None for a in answers]


def _steps(text: str, delimiter: str) -> tuple[str, ...]:
    return tuple(step for step in text.split(delimiter) if step.strip()) or (text,)


def select_answer(
    texts: list[str],
    answers: list[str | None],
    scores: list[float],
    selection: Selection,
    exhausted: bool,
    waves: list[int],
    tokens: list[int] | None = None,
) -> StrategyResult:
    """Pick among samples by ``selection``; also used to score subsets in budget sweeps.

    The trace lists every sample's text, answer, score and completion tokens, in drawing order,
    so a sweep can re-select from any prefix of them without generating again.
    """
    sample_scores: list[float | None] = list(scores) if scores else [None] * len(answers)
    sample_tokens: list[int | None] = list(tokens) if tokens else [None] * len(answers)
    trace = {
        "samples": [
            {"answer": a, "score": s, "tokens": t, "text": text}
            for a, s, t, text in zip(answers, sample_scores, sample_tokens, texts, strict=True)
        ]
    }
    trace |= {"waves": waves, "samples_drawn": len(texts), "selection": selection}
    if not texts:
        return StrategyResult(answer=None, output="", best_so_far=True, trace=trace)
    if selection == "argmax":
        best = max(range(len(texts)), key=lambda i: scores[i])
        return StrategyResult(answer=answers[best], output=texts[best], best_so_far=exhausted, trace=trace)
    totals = tally(answers, scores if selection == "weighted" else [1.0] * len(texts))
    trace["tally"] = totals
    if not totals:
        return StrategyResult(answer=None, output=texts[0], best_so_far=exhausted, trace=trace)
    winner = max(totals, key=totals.__getitem__)
    output = next(text for text, answer in zip(texts, answers, strict=True) if answer == winner)
    return StrategyResult(answer=winner, output=output, best_so_far=exhausted, trace=trace)

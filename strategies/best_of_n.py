"""``best_of_n``: N complete samples, one chosen by vote or by a verifier.

Samples are drawn in waves (one batched engine request per wave, n samples sharing
the prompt's KV). With ``adaptive`` on, sampling stops as soon as the leading answer
cannot be overtaken by the samples still to come — each remaining sample can add at
most 1 to any answer's tally — or when the budget runs out.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.errors import BudgetExceededError
from orchestrator.core.session import Session
from orchestrator.core.verification import Aggregation, ScoreRequest
from strategies.base import StrategyResult, register
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from strategies.selection import (
    Rule,
    Sample,
    VoteBy,
    answer_of,
    canonical_by_meaning,
    choose,
    split_steps,
    tally,
    vote_is_decided,
)
from verifiers.registry import VerifierName


class BestOfNParams(BaseModel):
    """Parameters of ``best_of_n``."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(8, ge=1, le=256, description="samples at most")
    selection: Rule = "majority"
    verifier: VerifierName = Field("arith_steps", description="scores samples for weighted and argmax selection")
    aggregation: Aggregation = "last"
    vote_by: VoteBy = Field(
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

    def parallel_streams(self) -> int:
        return self.n

    @model_validator(mode="after")
    def _sampling_needs_temperature(self) -> BestOfNParams:
        if self.temperature == 0.0 and self.n > 1:
            raise ValueError("temperature must be > 0 when n > 1: greedy samples are all identical")
        return self


@register("best_of_n", BestOfNParams)
async def best_of_n(question: str, session: Session, params: BestOfNParams) -> StrategyResult:
    """N samples (in waves); pick by majority vote, verifier-weighted vote or verifier argmax."""
    prompt = session.renderer.render_question(question, system=params.system_prompt)
    samples: list[Sample] = []
    waves: list[int] = []
    exhausted = False
    wave = params.wave_size if params.adaptive and params.selection != "argmax" else params.n
    try:
        while len(samples) < params.n:
            size = min(wave, params.n - len(samples))
            samples += await draw_wave(question, prompt, session, params, size)
            if params.vote_by == "meaning":
                samples = await canonical_by_meaning(samples, params.meaning_threshold)
            waves.append(size)
            votes = tally(samples, params.selection)
            await session.emit({"type": "wave", "samples": len(samples), "tally": votes})
            if params.adaptive and vote_is_decided(votes, params.n - len(samples)):
                break
    except BudgetExceededError:
        exhausted = True
    return result_of(samples, params.selection, exhausted, waves)


async def draw_wave(question: str, prompt: str, session: Session, params: BestOfNParams, size: int) -> list[Sample]:
    """``size`` samples in one batched request, scored by the verifier when the selection needs it."""
    sampling = SamplingSettings(
        n=size, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens
    )
    [result] = await session.generate([prompt], sampling)
    texts = [c.text for c in result.completions]
    scores: Sequence[float | None] = [None] * len(texts)
    if params.selection != "majority":
        batch = [ScoreRequest(question, split_steps(text, params.step_delimiter)) for text in texts]
        scores = await session.score(session.verifier(params.verifier), batch, params.aggregation)
    return [
        Sample(
            text=c.text,
            answer=answer_of(c.text, params.vote_by),
            tokens=len(c.token_ids),
            score=score,
            cut_off=c.finish_reason != "stop",
        )
        for c, score in zip(result.completions, scores, strict=True)
    ]


def result_of(samples: Sequence[Sample], rule: Rule, exhausted: bool, waves: list[int]) -> StrategyResult:
    """The chosen answer, with a trace of every sample in drawing order (a sweep re-selects from it)."""
    trace = {
        "samples": [sample.model_dump() for sample in samples],
        "waves": waves,
        "samples_drawn": len(samples),
        "selection": rule,
    }
    if not samples:
        return StrategyResult(answer=None, output="", best_so_far=True, trace=trace)
    chosen = choose(samples, rule)
    if chosen.tally is not None:
        trace["tally"] = chosen.tally
    output, cut_off = (chosen.sample.text, chosen.sample.cut_off) if chosen.sample else ("", False)
    return StrategyResult(answer=chosen.answer, output=output, best_so_far=exhausted, cut_off=cut_off, trace=trace)

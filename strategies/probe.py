"""``probe``: a few short samples that estimate a question's difficulty without knowing its answer.

Their answer agreement and mean verifier score give a difficulty in [0, 1]. The sweep
probes every item once, so its report can bin items by difficulty; ``probe`` alone answers
with the samples' majority.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.errors import BudgetExceededError
from orchestrator.core.session import Session
from orchestrator.core.verification import ScoreRequest
from strategies.base import StrategyResult, register
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from strategies.selection import Sample, agreement, choose, sample_of, split_steps
from verifiers.registry import VerifierName

MIN_PROBE_TOKENS = 48  # shorter samples rarely reach an answer: no signal in them
PROBE_TEMPERATURE = 0.7
PROBE_LOGPROBS = 5  # every probe sample carries its confidence measures (verifiers.confidence)


class ProbeParams(BaseModel):
    """Parameters of ``probe``."""

    model_config = ConfigDict(extra="forbid")

    probe_samples: int = Field(4, ge=2, le=16, description="short samples that estimate difficulty")
    probe_max_tokens: int = Field(160, ge=16, le=1024)
    verifier: VerifierName = Field("arith_steps", description="scores the probe samples")

    def parallel_streams(self) -> int:
        return self.probe_samples


def estimate_difficulty(samples: list[Sample]) -> float:
    """Difficulty in [0, 1]: low when the samples agree and verify well.

    Example: four samples all answering "4", each scored 0.95, are about 0.03.
    """
    scores = [s.score for s in samples if s.score is not None]
    mean_score = sum(scores) / len(scores) if scores else 0.5
    return 1.0 - (agreement(samples) + mean_score) / 2.0


class Probe(BaseModel):
    """What a few short samples say about a question, without knowing its answer."""

    samples: list[Sample]
    agreement: float
    difficulty: float

    @property
    def settled(self) -> bool:
        """Every sample states the same answer and none fails verification."""
        scores = [s.score if s.score is not None else 0.5 for s in self.samples]
        return self.agreement == 1.0 and self.samples[0].answer is not None and min(scores) >= 0.5

    def majority(self, **result: Any) -> StrategyResult:
        """The most common answer and a sample text that states it, as a result."""
        chosen = choose(self.samples, "majority")
        output, cut_off = (chosen.sample.text, chosen.sample.cut_off) if chosen.sample else ("", False)
        return StrategyResult(answer=chosen.answer, output=output, cut_off=cut_off, **result)

    def summary(self) -> dict[str, Any]:
        return {
            "answers": [s.answer for s in self.samples],
            "scores": [s.score for s in self.samples],
            "agreement": self.agreement,
            "difficulty": self.difficulty,
            "settled": self.settled,
        }


def probe_shape(params: ProbeParams, remaining_tokens: int | None) -> tuple[int, int] | None:
    """(samples, max_tokens) of a probe that spends at most half the budget left; None if none fits.

    Example: with 4 x 160 asked and 256 tokens left, ``(2, 64)``.
    """
    if remaining_tokens is None:
        return params.probe_samples, params.probe_max_tokens
    share, samples = remaining_tokens // 2, params.probe_samples
    while samples > 2 and share // samples < MIN_PROBE_TOKENS:
        samples -= 1
    per_sample = min(params.probe_max_tokens, share // samples)
    return (samples, per_sample) if per_sample >= MIN_PROBE_TOKENS else None


async def run_probe(question: str, session: Session, params: ProbeParams) -> Probe | None:
    """Sample the question a few times (short, charged to the request) and estimate its difficulty.

    The probe's samples take at most half of the budget left after its prompt; None when the
    budget cannot fit one.
    """
    prompt = session.renderer.render_question(question, system=DEFAULT_SYSTEM_PROMPT)
    remaining = session.meter.remaining_tokens()
    if remaining is not None:  # the prompt is paid too (a long one may leave room for no probe)
        remaining -= session.renderer.count_tokens(prompt)
    shape = probe_shape(params, remaining)
    if shape is None:
        return None
    sampling = SamplingSettings(n=shape[0], temperature=PROBE_TEMPERATURE, max_tokens=shape[1], logprobs=PROBE_LOGPROBS)
    [result] = await session.generate([prompt], sampling)
    batch = [ScoreRequest(question, split_steps(c.text), c.logprobs) for c in result.completions]
    scores = await session.score(session.verifier(params.verifier), batch)
    samples = [
        sample_of(c, score=score, top_k=PROBE_LOGPROBS, vocab_size=session.renderer.vocab_size)
        for c, score in zip(result.completions, scores, strict=True)
    ]
    return Probe(samples=samples, agreement=agreement(samples), difficulty=estimate_difficulty(samples))


@register("probe", ProbeParams)
async def probe(question: str, session: Session, params: ProbeParams) -> StrategyResult:
    """A few short samples: their majority, and the difficulty they show in the trace."""
    found = await run_probe(question, session, params)
    if found is None:
        raise BudgetExceededError("the token budget cannot fit a probe", limit="tokens")
    return found.majority(trace={"probe": found.summary()})

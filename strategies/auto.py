"""``auto``: compute-optimal routing (Snell et al.).

1. Probe: a few short samples of the question, charged to the request (at most half the
   budget left; with less than that, no probe and a middling difficulty). Their answer
   agreement and mean verifier score estimate the difficulty in [0, 1] — no ground truth.
2. Saturation: if every probe sample states the same answer and the verifier finds no
   fault in any of them, the answer is settled; spending more would buy nothing.
3. Otherwise the difficulty bin and the budget left pick a strategy and its params from a
   versioned policy table (``strategies.policy``; the budget-sweep harness fits it, a
   hand-set default ships).

The decision and its reasons go into the trace.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.errors import BudgetExceededError, ConfigurationError
from orchestrator.core.session import Session
from orchestrator.core.verification import ScoreRequest
from strategies.base import REGISTRY, StrategyResult, parallel_streams, register
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from strategies.policy import DEFAULT_POLICY, Policy, load_policy
from strategies.selection import Sample, agreement, choose, sample_of, split_steps
from verifiers.registry import VerifierName

POLICY_ENV = "TTC_ROUTING_POLICY"  # a fitted policy file (``ttc fit-router`` writes one)
MIN_PROBE_TOKENS = 48  # shorter samples rarely reach an answer: no signal in them
PROBE_TEMPERATURE = 0.7
PROBE_LOGPROBS = 5  # every probe sample carries its confidence measures (verifiers.confidence)
MIDDLING = 0.5  # the difficulty assumed when the budget cannot fit a probe


class ProbeParams(BaseModel):
    """Parameters of ``probe`` (and the probe ``auto`` starts with)."""

    model_config = ConfigDict(extra="forbid")

    probe_samples: int = Field(4, ge=2, le=16, description="short samples that estimate difficulty")
    probe_max_tokens: int = Field(160, ge=16, le=1024)
    verifier: VerifierName = Field("arith_steps", description="scores the probe samples")

    def parallel_streams(self) -> int:
        return self.probe_samples


class AutoParams(ProbeParams):
    """Parameters of ``auto``."""

    policy: Policy | None = Field(
        None,
        description=f"a routing policy given inline (what `ttc fit-router` writes); default: the server's "
        f"(${POLICY_ENV}, a file the operator chose), else the shipped one. A request never names a file.",
    )

    def parallel_streams(self) -> int:
        """The probe's, or the widest strategy the policy may route to."""
        if self.policy is None:
            return self.probe_samples  # the server's own policy: its operator vouches for it
        entries = [entry for bin_entries in self.policy.table.values() for entry in bin_entries]
        routed = [parallel_streams(REGISTRY[e.strategy].parse_params(e.params)) for e in entries]
        return max([self.probe_samples, *routed])

    @field_validator("policy")
    @classmethod
    def _usable(cls, policy: Policy | None) -> Policy | None:
        if policy is None:
            return None
        try:
            return policy.check("in params")
        except ConfigurationError as error:  # the client's policy, so the client's mistake
            raise ValueError(error.message) from None


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
    """The difficulty probe ``auto`` starts with, alone: a short vote, difficulty in the trace."""
    found = await run_probe(question, session, params)
    if found is None:
        raise BudgetExceededError("the token budget cannot fit a probe", limit="tokens")
    return found.majority(trace={"probe": found.summary()})


@register("auto", AutoParams)
async def auto(question: str, session: Session, params: AutoParams) -> StrategyResult:
    """Probe the question's difficulty, then run the policy's strategy for that difficulty and budget."""
    policy = params.policy or load_policy(os.environ.get(POLICY_ENV) or DEFAULT_POLICY)
    found = await run_probe(question, session, params)
    if found is None:  # too small a budget to probe: route as a question of middling difficulty
        return await _route(question, session, policy, MIDDLING, {"policy": policy.version, "probe": None}, None)
    decision: dict[str, Any] = {"policy": policy.version, "probe": found.summary()}
    if found.settled:
        decision["choice"] = "settled by the probe: every sample agrees and none fails verification"
        await session.emit({"type": "route", **decision})
        return found.majority(trace={"route": decision})
    return await _route(question, session, policy, found.difficulty, decision, found)


async def _route(
    question: str, session: Session, policy: Policy, difficulty: float, decision: dict[str, Any], found: Probe | None
) -> StrategyResult:
    """Run the policy's choice for ``difficulty`` and the budget left; fall back to the probe's vote."""
    bin_index, entry = policy.choose(difficulty, session.meter.remaining_tokens())
    decision |= {
        "bin": bin_index,
        "strategy": entry.strategy,
        "params": entry.params,
        "choice": f"difficulty {difficulty:.2f} is bin {bin_index}; {entry.strategy} fits the budget left",
    }
    await session.emit({"type": "route", **decision})
    chosen = REGISTRY[entry.strategy]
    try:
        routed = await chosen.run(question, session, chosen.parse_params(entry.params))
    except BudgetExceededError:  # the probe's majority is still an answer
        if found is None:
            raise
        return found.majority(best_so_far=True, trace={"route": decision})
    return routed.model_copy(update={"trace": {"route": decision, **routed.trace}})

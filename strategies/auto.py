"""``auto``: compute-optimal routing (Snell et al.).

1. Probe: a few short samples of the question, charged to the request (at most half the
   budget left; with less than that, no probe and a middling difficulty). Their answer
   agreement and mean verifier score estimate the difficulty in [0, 1] — no ground truth.
2. Saturation: if every probe sample states the same answer and the verifier finds no
   fault in any of them, the answer is settled; spending more would buy nothing.
3. Otherwise the difficulty bin and the budget left pick a strategy and its params from a
   versioned policy table (the budget-sweep harness fits it; a hand-set default ships).

The decision and its reasons go into the trace.
"""

from __future__ import annotations

import bisect
import json
import os
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.backends.base import SamplingSettings
from orchestrator.context import ReasoningContext
from orchestrator.errors import BudgetExceededError, ConfigurationError
from strategies.base import REGISTRY, StrategyResult, register
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from verifiers.base import ScoreRequest, VerifierName, get_verifier
from verifiers.extraction import extract_answer

DEFAULT_POLICY = Path(__file__).parent / "policies" / "default.json"
POLICY_ENV = "TTC_ROUTING_POLICY"  # a fitted policy file (``ttc fit-router`` writes one)


class PolicyEntry(BaseModel):
    """Use ``strategy`` with ``params`` when at least ``min_tokens`` of budget remain."""

    min_tokens: int = Field(ge=0)
    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    budget: int | None = Field(None, description="the sweep budget this entry won at (fitted policies)")


class Policy(BaseModel):
    """Difficulty bin edges and, per bin, entries ordered by the budget they need."""

    version: str
    description: str = ""
    difficulty_bins: list[float]
    table: dict[str, list[PolicyEntry]]

    def choose(self, difficulty: float, remaining_tokens: int | None) -> tuple[int, PolicyEntry]:
        """The bin of ``difficulty`` and the largest entry the remaining budget affords."""
        bin_index = bisect.bisect_right(self.difficulty_bins, difficulty)
        entries = sorted(self.table[str(bin_index)], key=lambda e: e.min_tokens)
        affordable = [e for e in entries if remaining_tokens is None or e.min_tokens <= remaining_tokens]
        return bin_index, (affordable or entries[:1])[-1]


def load_policy(path: str = str(DEFAULT_POLICY)) -> Policy:
    """Read and check a policy file: every bin present, every strategy and params valid.

    Cached per file version: a policy rewritten in place (a refit) is read again.
    """
    try:
        version = Path(path).stat().st_mtime_ns
    except OSError as error:
        raise ConfigurationError(f"cannot read the routing policy {path}: {error}") from None
    return _load_policy(path, version)


@cache
def _load_policy(path: str, _version: int) -> Policy:
    try:
        policy = Policy.model_validate(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read the routing policy {path}: {error}") from None
    for bin_index in range(len(policy.difficulty_bins) + 1):
        if not policy.table.get(str(bin_index)):
            raise ConfigurationError(f"routing policy {path} has no entries for difficulty bin {bin_index}")
    for entries in policy.table.values():
        for entry in entries:
            if entry.strategy in ("auto", "probe") or entry.strategy not in REGISTRY:
                raise ConfigurationError(f"routing policy {path} names unusable strategy {entry.strategy!r}")
            REGISTRY[entry.strategy].parse_params(entry.params)
    return policy


class ProbeParams(BaseModel):
    """Parameters of ``probe`` (and the probe ``auto`` starts with)."""

    model_config = ConfigDict(extra="forbid")

    probe_samples: int = Field(4, ge=2, le=16, description="short samples that estimate difficulty")
    probe_max_tokens: int = Field(160, ge=16, le=1024)
    verifier: VerifierName = Field("arith_steps", description="scores the probe samples")


class AutoParams(ProbeParams):
    """Parameters of ``auto``."""

    policy_path: str | None = Field(
        None, description=f"routing policy file (JSON); default: ${POLICY_ENV}, else the shipped default"
    )


def estimate_difficulty(answers: list[str | None], scores: list[float]) -> tuple[float, float]:
    """(difficulty in [0, 1], answer agreement): low when samples agree and verify well.

    Example: ``estimate_difficulty(["4", "4", "4", "4"], [0.95] * 4)`` is about ``(0.03, 1.0)``.
    """
    counts = Counter(a for a in answers if a is not None)
    agreement = counts.most_common(1)[0][1] / len(answers) if counts else 0.0
    mean_score = sum(scores) / len(scores) if scores else 0.5
    return 1.0 - (agreement + mean_score) / 2.0, agreement


class Probe(BaseModel):
    """What a few short samples say about a question, without knowing its answer."""

    texts: list[str]
    answers: list[str | None]
    scores: list[float]
    agreement: float
    difficulty: float

    @property
    def settled(self) -> bool:
        """Every sample states the same answer and none fails verification."""
        return self.agreement == 1.0 and self.answers[0] is not None and min(self.scores) >= 0.5

    def majority(self) -> tuple[str | None, str]:
        """The most common answer and a sample text that states it."""
        top = Counter(a for a in self.answers if a is not None).most_common(1)
        answer = top[0][0] if top else None
        return answer, next((t for t, a in zip(self.texts, self.answers, strict=True) if a == answer), self.texts[0])

    def summary(self) -> dict[str, Any]:
        return {
            "answers": self.answers,
            "scores": self.scores,
            "agreement": self.agreement,
            "difficulty": self.difficulty,
            "settled": self.settled,
        }


MIN_PROBE_TOKENS = 48  # shorter samples rarely reach an answer: no signal in them


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


async def run_probe(question: str, ctx: ReasoningContext, params: ProbeParams) -> Probe | None:
    """Sample the question a few times (short, charged to the request) and estimate its difficulty.

    The probe's samples take at most half of the budget left after its prompt; None when the
    budget cannot fit one.
    """
    prompt = ctx.renderer.render_question(question, system=DEFAULT_SYSTEM_PROMPT)
    remaining = ctx.meter.remaining_tokens()
    if remaining is not None:  # the prompt is paid too (a long one may leave room for no probe)
        remaining -= ctx.renderer.count_tokens(prompt)
    shape = probe_shape(params, remaining)
    if shape is None:
        return None
    [result] = await ctx.generate([prompt], SamplingSettings(n=shape[0], temperature=0.7, max_tokens=shape[1]))
    texts = [c.text for c in result.completions]
    answers = [extract_answer(text) for text in texts]
    batch = [ScoreRequest(question, tuple(t for t in text.split("\n\n") if t.strip()) or (text,)) for text in texts]
    scores = await ctx.score(get_verifier(params.verifier), batch)
    difficulty, agreement = estimate_difficulty(answers, scores)
    return Probe(texts=texts, answers=answers, scores=scores, agreement=agreement, difficulty=difficulty)


@register("probe", ProbeParams)
async def probe(question: str, ctx: ReasoningContext, params: ProbeParams) -> StrategyResult:
    """The difficulty probe ``auto`` starts with, alone: a short vote, difficulty in the trace."""
    found = await run_probe(question, ctx, params)
    if found is None:
        raise BudgetExceededError("the token budget cannot fit a probe", limit="tokens")
    answer, output = found.majority()
    return StrategyResult(answer=answer, output=output, trace={"probe": found.summary()})


@register("auto", AutoParams)
async def auto(question: str, ctx: ReasoningContext, params: AutoParams) -> StrategyResult:
    """Probe the question's difficulty, then run the policy's strategy for that difficulty and budget."""
    policy = load_policy(params.policy_path or os.environ.get(POLICY_ENV) or str(DEFAULT_POLICY))
    found = await run_probe(question, ctx, params)
    if found is None:  # too small a budget to probe: route as a question of middling difficulty
        return await _route(question, ctx, policy, MIDDLING, {"policy": policy.version, "probe": None}, None)
    decision: dict[str, Any] = {"policy": policy.version, "probe": found.summary()}
    if found.settled:
        decision["choice"] = "settled by the probe: every sample agrees and none fails verification"
        await ctx.emit({"type": "route", **decision})
        answer, output = found.majority()
        return StrategyResult(answer=answer, output=output, trace={"route": decision})
    return await _route(question, ctx, policy, found.difficulty, decision, found)


MIDDLING = 0.5


async def _route(
    question: str, ctx: ReasoningContext, policy: Policy, difficulty: float, decision: dict[str, Any], found
) -> StrategyResult:
    """Run the policy's choice for ``difficulty`` and the budget left; fall back to the probe's vote."""
    bin_index, entry = policy.choose(difficulty, ctx.meter.remaining_tokens())
    decision |= {
        "bin": bin_index,
        "strategy": entry.strategy,
        "params": entry.params,
        "choice": f"difficulty {difficulty:.2f} is bin {bin_index}; {entry.strategy} fits the budget left",
    }
    await ctx.emit({"type": "route", **decision})
    chosen = REGISTRY[entry.strategy]
    try:
        routed = await chosen.run(question, ctx, chosen.parse_params(entry.params))
    except BudgetExceededError:  # the probe's majority is still an answer
        if found is None:
            raise
        answer, output = found.majority()
        return StrategyResult(answer=answer, output=output, best_so_far=True, trace={"route": decision})
    return routed.model_copy(update={"trace": {"route": decision, **routed.trace}})

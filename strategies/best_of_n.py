"""``best_of_n``: N complete samples, one chosen by vote or by a verifier.

Samples are drawn in waves (one batched engine request per wave, n samples sharing
the prompt's KV), each with its tokens' top-k logprobs, so every sample carries its
confidence measures (``verifiers.confidence``). With ``adaptive`` on, sampling stops when
``stop_rule`` says the vote is settled, or when the budget runs out:

- ``margin``: the leading answer cannot be overtaken by the samples still to come;
- ``adaptive_consistency``: P(the leader stays the leader) under a Dirichlet posterior over
  the answers' shares reaches ``stop_confidence`` (Aggarwal et al. 2023);
- ``esc``: every answer of the latest wave agrees (early-stopping self-consistency, Li et al. 2024).

``keep_top`` is DeepConf offline (Fu et al. 2025): the vote is held among only the most
confident fraction of the samples; with ``selection="weighted"`` and a ``confidence``
verifier, their votes are weighted by confidence too. ``online_keep`` is DeepConf online
(``strategies.deepconf``): after a warm-up wave, traces are aborted in the engine while they
are decoded once their confidence drops, and sampling stops at a confidence-weighted consensus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.backends.base import SamplingSettings, StopCheck
from orchestrator.core.errors import BudgetExceededError
from orchestrator.core.session import Session
from orchestrator.core.verification import Aggregation, ScoreRequest
from strategies.base import StrategyResult, register
from strategies.deepconf import below_threshold, consensus_share, online_threshold
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from strategies.selection import (
    Rule,
    Sample,
    VoteBy,
    canonical_by_meaning,
    choose,
    leader_stays_probability,
    most_confident,
    sample_of,
    split_steps,
    tally,
    vote_is_decided,
    window_agrees,
)
from strategies.streamed import StreamSampling, draw_streamed
from verifiers.confidence import Measure
from verifiers.registry import CONFIDENCE_VERIFIERS, VerifierName

StopRule = Literal["margin", "adaptive_consistency", "esc"]


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
    logprobs: int = Field(
        5, ge=0, le=20, description="top-k logprobs per token, for every sample's confidence measures (0: none)"
    )
    stop_rule: StopRule = Field("margin", description="when adaptive sampling stops: margin, adaptive_consistency, esc")
    stop_confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1.0,
        description="adaptive_consistency: stop once P(the leader stays leader) reaches this",
    )
    keep_top: float | None = Field(
        None, gt=0.0, le=1.0, description="DeepConf offline: vote among only this most confident share (0.1, 0.9)"
    )
    confidence_measure: Measure = Field("lowest_group", description="the confidence measure keep_top ranks by")
    online_keep: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="DeepConf online: after a warm-up wave, stop traces less confident than "
        "this most confident share of it (0.1 aggressive, 0.9 cautious)",
    )
    consensus: float = Field(
        0.95,
        gt=0.5,
        le=1.0,
        description="DeepConf online: stop once the leader holds this confidence-weighted share",
    )
    streamed: bool = Field(
        False,
        description="decide as each sample finishes instead of after each wave, aborting the rest in the engine "
        "(strategies.streamed)",
    )
    in_flight: int | None = Field(
        None, ge=1, le=256, description="streamed: samples decoding at once (default n: fire all, cancel the rest)"
    )
    accept_score: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="streamed: answer with the first finished sample the verifier scores at least this "
        "('sample until one checks')",
    )
    give_up_after: int | None = Field(
        None, ge=1, description="streamed with accept_score: after this many finished samples none accepted, vote"
    )

    def parallel_streams(self) -> int:
        return min(self.in_flight or self.n, self.n) if self.streamed else self.n

    @model_validator(mode="after")
    def _streamed_options(self) -> BestOfNParams:
        if not self.streamed and (self.in_flight or self.accept_score is not None or self.give_up_after):
            raise ValueError("in_flight, accept_score and give_up_after need streamed: true")
        if self.streamed and self.online_keep is not None:
            raise ValueError("streamed and online_keep are two different stops: choose one")
        return self

    @model_validator(mode="after")
    def _confidence_needs_logprobs(self) -> BestOfNParams:
        deepconf = self.keep_top is not None or self.online_keep is not None
        if (deepconf or self.verifier in {*CONFIDENCE_VERIFIERS, "learned"}) and self.logprobs == 0:
            raise ValueError(
                "keep_top, online_keep, learned and confidence verifiers read token logprobs: set logprobs > 0"
            )
        return self

    @model_validator(mode="after")
    def _sampling_needs_temperature(self) -> BestOfNParams:
        if self.temperature == 0.0 and self.n > 1:
            raise ValueError("temperature must be > 0 when n > 1: greedy samples are all identical")
        return self


@register("best_of_n", BestOfNParams)
async def best_of_n(question: str, session: Session, params: BestOfNParams) -> StrategyResult:
    """N samples (in waves); pick by majority vote, verifier-weighted vote or verifier argmax."""
    prompt = session.renderer.render_question(question, system=params.system_prompt)
    if params.online_keep is not None:
        return await deepconf_online(question, prompt, session, params)
    if params.streamed:
        return await streamed_best_of_n(question, prompt, session, params)
    samples: list[Sample] = []
    waves: list[int] = []
    exhausted = False
    wave = params.wave_size if params.adaptive and params.selection != "argmax" else params.n
    try:
        while len(samples) < params.n:
            size = min(wave, params.n - len(samples))
            samples += await draw_wave(question, prompt, session, params, size)
            if params.vote_by == "meaning":
                samples = await canonical_by_meaning(samples, params.meaning_threshold, session.embedder)
            waves.append(size)
            votes = tally(samples, params.selection)
            await session.emit({"type": "wave", "samples": len(samples), "tally": votes})
            if params.adaptive and is_settled(params, samples, size, votes):
                break
    except BudgetExceededError:
        exhausted = True
    kept = most_confident(samples, params.keep_top, params.confidence_measure) if params.keep_top else None
    return result_of(samples, params.selection, exhausted, waves, voters=kept)


async def deepconf_online(question: str, prompt: str, session: Session, params: BestOfNParams) -> StrategyResult:
    """A whole warm-up wave sets the threshold; later waves are streamed and cut below it (``strategies.deepconf``)."""
    samples: list[Sample] = []
    waves: list[int] = []
    exhausted, threshold = False, None
    try:
        samples += await draw_wave(question, prompt, session, params, min(params.wave_size, params.n))
        waves.append(len(samples))
        threshold = online_threshold(samples, params.online_keep or 1.0)
        stop = below_threshold(threshold, params.logprobs) if threshold is not None else None
        while len(samples) < params.n and consensus_share(samples) < params.consensus:
            size = min(params.wave_size, params.n - len(samples))
            samples += await draw_wave(question, prompt, session, params, size, stop_when=stop)
            waves.append(size)
            stopped = sum(sample.stopped for sample in samples)
            await session.emit({"type": "wave", "samples": len(samples), "stopped": stopped, "threshold": threshold})
    except BudgetExceededError:
        exhausted = True
    voters = [sample for sample in samples if not sample.stopped]
    if params.keep_top:
        voters = most_confident(voters, params.keep_top, params.confidence_measure)
    result = result_of(samples, params.selection, exhausted, waves, voters=voters)
    return result.model_copy(update={"trace": {**result.trace, "online_threshold": threshold}})


async def streamed_best_of_n(question: str, prompt: str, session: Session, params: BestOfNParams) -> StrategyResult:
    """Each sample judged as it finishes (``strategies.streamed``): accepted by the verifier, settled
    by ``stop_rule``, or given up on; the samples still decoding are then aborted."""
    scored = params.accept_score is not None or params.selection != "majority"
    how = StreamSampling(
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,
        logprobs=params.logprobs,
        verifier=params.verifier if scored else None,
        step_delimiter=params.step_delimiter,
        vote_by=params.vote_by,
    )

    def judge(finished: Sequence[Sample]) -> bool:
        if params.accept_score is not None:
            if accepted(finished, params.accept_score) is not None:
                return True
            if params.give_up_after is not None and len(finished) >= params.give_up_after:
                return True
        if params.stop_rule == "esc" and len(finished) < params.wave_size:
            return False  # esc judges a whole window of agreeing samples
        return params.adaptive and is_settled(
            params, list(finished), params.wave_size, tally(finished, params.selection)
        )

    in_flight = min(params.in_flight or params.n, params.n)
    drawn = await draw_streamed(question, prompt, session, how, limit=params.n, in_flight=in_flight, judge=judge)
    chosen = accepted(drawn.finished, params.accept_score) if params.accept_score is not None else None
    voters = [chosen] if chosen is not None else drawn.finished
    result = result_of(drawn.every, "majority" if chosen else params.selection, drawn.exhausted, [], voters=voters)
    streamed = {
        "in_flight": in_flight,
        "finished": len(drawn.finished),
        "aborted": len(drawn.aborted),
        "accepted": chosen is not None,
    }
    return result.model_copy(update={"trace": {**result.trace, "streamed": streamed}})


def accepted(finished: Sequence[Sample], threshold: float | None) -> Sample | None:
    """The first finished sample with an answer that the verifier scores at least ``threshold``."""
    if threshold is None:
        return None
    return next((s for s in finished if s.answer is not None and s.score is not None and s.score >= threshold), None)


def is_settled(params: BestOfNParams, samples: list[Sample], last_wave: int, votes: dict[str, float]) -> bool:
    """Whether ``params.stop_rule`` ends sampling after a wave of ``last_wave`` samples."""
    if params.stop_rule == "adaptive_consistency":
        return leader_stays_probability(tally(samples)) >= params.stop_confidence
    if params.stop_rule == "esc":
        return window_agrees(samples[-last_wave:])
    return vote_is_decided(votes, params.n - len(samples))


async def draw_wave(
    question: str, prompt: str, session: Session, params: BestOfNParams, size: int, stop_when: StopCheck | None = None
) -> list[Sample]:
    """``size`` samples in one batched request, scored by the verifier when the selection needs it.

    With ``stop_when`` each sample is its own streamed request (the engine can abort one without the
    others); an aborted sample is marked ``stopped``.
    """
    sampling = SamplingSettings(
        n=1 if stop_when else size,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,
        logprobs=params.logprobs or None,
    )
    prompts = [prompt] * size if stop_when else [prompt]
    results = await session.generate(prompts, sampling, stop_when=stop_when)
    completions = [completion for result in results for completion in result.completions]
    scores: Sequence[float | None] = [None] * len(completions)
    if params.selection != "majority":
        batch = [ScoreRequest(question, split_steps(c.text, params.step_delimiter), c.logprobs) for c in completions]
        scores = await session.score(session.verifier(params.verifier), batch, params.aggregation)
    return [
        sample_of(
            c,
            score=score,
            top_k=params.logprobs,
            vocab_size=session.renderer.vocab_size,
            vote_by=params.vote_by,
            stopped=stop_when is not None and c.finish_reason == "abort",
        )
        for c, score in zip(completions, scores, strict=True)
    ]


def result_of(
    samples: Sequence[Sample], rule: Rule, exhausted: bool, waves: list[int], voters: list[Sample] | None = None
) -> StrategyResult:
    """The answer ``rule`` chooses among ``voters`` (default: every sample), with a trace of every
    sample in drawing order (a sweep re-selects from it)."""
    trace = {
        "samples": [sample.model_dump() for sample in samples],
        "waves": waves,
        "samples_drawn": len(samples),
        "selection": rule,
    }
    if voters is not None:
        trace["voters"] = len(voters)
    if not samples:
        return StrategyResult(answer=None, output="", best_so_far=True, trace=trace)
    chosen = choose(voters or samples, rule)
    if chosen.tally is not None:
        trace["tally"] = chosen.tally
    output, cut_off = (chosen.sample.text, chosen.sample.cut_off) if chosen.sample else ("", False)
    return StrategyResult(answer=chosen.answer, output=output, best_so_far=exhausted, cut_off=cut_off, trace=trace)

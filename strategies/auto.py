"""``auto``: sequential allocation of samples per question (after Snell et al.).

The first wave of samples is both the probe and the first votes: nothing is thrown away.
After every wave ``strategies.allocation.decide`` reads the votes so far and the budget
left and says: answer now, draw another wave (its size), or switch to a step search.
Easy questions settle after one wave; questions whose votes keep scattering stop early
too, unless the policy has a search worth switching to; the rest get more samples.

The rule per budget and the way samples are drawn come from a versioned policy
(``strategies.policy``) fitted by replaying one model's dev sweep (``ttc fit-router``). It is
the request's own (checked to name the served model), else the one the runtime chose for the
served model and hands over through the session. Every decision and its features go into the
trace and into a ``route`` event.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.core.errors import BudgetExceededError, ConfigurationError, InvalidRequestError
from orchestrator.core.session import Session
from strategies.allocation import (
    Decision,
    Switch,
    Votes,
    decide,
    first_accepted,
    first_wave_size,
    joined_vote,
    mean_length,
)
from strategies.base import REGISTRY, StrategyResult, register
from strategies.best_of_n import BestOfNParams, draw_wave, result_of
from strategies.policy import BudgetRule, Policy
from strategies.selection import Sample

# Without a policy of its own, admission outside a runtime (which knows the served policy's
# widest wave) counts ``auto`` at this many sequences: the widest wave a fitted grid draws.
SERVED_POLICY_STREAMS = 8


class AutoParams(BaseModel):
    """Parameters of ``auto``."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy | None = Field(
        None,
        description="a policy given inline (what `ttc fit-router` writes), fitted on the served model; default: "
        "the server's (TTC_ROUTING_POLICY, a file the operator chose), else the one shipped for the served model. "
        "A request never names a file.",
    )

    def parallel_streams(self) -> int:
        """The widest wave (or switched-to search) of the inline policy (see ``SERVED_POLICY_STREAMS``)."""
        return self.policy.widest_wave() if self.policy is not None else SERVED_POLICY_STREAMS

    @field_validator("policy")
    @classmethod
    def _usable(cls, policy: Policy | None) -> Policy | None:
        if policy is None:
            return None
        try:
            return policy.check("in params")
        except ConfigurationError as error:  # the client's policy, so the client's mistake
            raise ValueError(error.message) from None


def wave_params(policy: Policy, rule: BudgetRule) -> BestOfNParams:
    """Best-of-N params that draw one wave the way the policy's samples were drawn."""
    sampling = policy.sampling
    return BestOfNParams(
        n=rule.allocation.max_samples,
        # a rule that accepts a checked sample needs every sample scored, as the dev pass scored them
        selection="weighted" if rule.allocation.accept_score is not None else "majority",
        verifier=sampling.verifier,
        temperature=sampling.temperature,
        max_tokens=sampling.max_tokens,
        logprobs=sampling.logprobs,
        system_prompt=sampling.system_prompt,
    )


@register("auto", AutoParams)
async def auto(question: str, session: Session, params: AutoParams) -> StrategyResult:
    """Waves of samples until the policy's rule says the vote is settled, hopeless or paid for."""
    policy = policy_for(session, params)
    prompt = session.renderer.render_question(question, system=policy.sampling.system_prompt)
    prompt_tokens = session.renderer.count_tokens(prompt)  # every wave's request pays for it (as if uncached)
    rule = policy.rule_for(session.meter.remaining_tokens(), prompt_tokens)
    allocation, sampling = rule.allocation, wave_params(policy, rule)
    route: dict[str, Any] = {"policy": policy.version, "rule_budget": rule.budget, "waves": []}
    samples: list[Sample] = []
    exhausted = False
    size = first_wave_size(allocation, _tokens_left(session, prompt_tokens), policy.sampling.typical_tokens)
    try:
        if size < 1:
            raise BudgetExceededError("the token budget cannot fit one sample", limit="tokens")
        while True:
            samples += await draw_wave(question, prompt, session, sampling, size)
            expected = mean_length([s.tokens for s in samples if s.tokens is not None], policy.sampling.typical_tokens)
            answers = [sample.answer for sample in samples]
            accepted = first_accepted(answers, [sample.score for sample in samples], allocation.accept_score)
            decision = decide(allocation, Votes.of(answers), _tokens_left(session, prompt_tokens), expected, accepted)
            await _record(session, route, size, decision)
            if decision.action == "switch" and allocation.switch is not None:
                return await _switch(question, session, allocation.switch, samples, route)
            if decision.action == "answer":
                break
            size = decision.size
    except BudgetExceededError:
        if not samples:
            raise
        exhausted = True
    accepted = first_accepted([s.answer for s in samples], [s.score for s in samples], allocation.accept_score)
    voters = [next(s for s in samples if s.answer == accepted)] if accepted is not None else None
    result = result_of(samples, "majority", exhausted, [wave["size"] for wave in route["waves"]], voters=voters)
    return result.model_copy(update={"trace": {**result.trace, "route": route}})


def policy_for(session: Session, params: AutoParams) -> Policy:
    """The request's policy if it has one (it must be fitted on the served model), else the served one."""
    if params.policy is not None:
        return check_policy_model(params.policy, session.served_model)
    if not isinstance(session.routing_policy, Policy):
        raise ConfigurationError(
            f"no routing policy is fitted for the served model {session.served_model!r}: fit one "
            "(`ttc sweep` on dev items, then `ttc fit-router`) and set TTC_ROUTING_POLICY, or pass params.policy"
        )
    return session.routing_policy


def check_policy_model(policy: Policy, served_model: str) -> Policy:
    """A request's own policy must be fitted on the model the service runs (else 400 saying so)."""
    if policy.model != served_model:
        raise InvalidRequestError(
            f"params.policy was fitted on {policy.model!r}, but this service runs {served_model!r}: "
            "its rules say nothing about this model's samples; fit one on a dev sweep of this model"
        )
    return policy


def _tokens_left(session: Session, prompt_tokens: int) -> int | None:
    """The budget left after paying for one more request's prompt (as if none of it were cached)."""
    remaining = session.meter.remaining_tokens()
    return None if remaining is None else remaining - prompt_tokens


async def _record(session: Session, route: dict[str, Any], size: int, decision: Decision) -> None:
    """One wave and the decision after it: in the trace and as a ``route`` event."""
    wave = {"size": size, "action": decision.action, "reason": decision.reason, **decision.features}
    route["waves"].append(wave)
    await session.emit({"type": "route", "wave": len(route["waves"]), **wave})


async def _switch(
    question: str, session: Session, switch: Switch, samples: list[Sample], route: dict[str, Any]
) -> StrategyResult:
    """Run the policy's step search with the budget left. Its answer is ``auto``'s, unless the switch
    is seeded with the samples drawn: then the search's answer joins their vote (``joined_vote``)."""
    chosen = REGISTRY[switch.strategy]
    searched = await chosen.run(question, session, chosen.parse_params(switch.params))
    route = route | {"switched_to": switch.strategy}
    if switch.vote_with_samples:
        answer = joined_vote([sample.answer for sample in samples], searched.answer)
        route["joined_vote"] = {"search": searched.answer, "answer": answer}
        voter = next((sample for sample in samples if answer is not None and sample.answer == answer), None)
        if answer != searched.answer and voter is not None:
            trace = {**searched.trace, "route": route}
            return StrategyResult(answer=answer, output=voter.text, cut_off=voter.cut_off, trace=trace)
    return searched.model_copy(update={"trace": {**searched.trace, "route": route}})

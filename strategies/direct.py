"""``direct``: one sample, no search — the baseline every other strategy must beat."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.session import Session
from strategies.base import StrategyResult, register
from verifiers.extraction import extract_answer

DEFAULT_SYSTEM_PROMPT = "Solve the problem. Think step by step, then finish with 'The answer is <answer>.'"


class DirectParams(BaseModel):
    """Parameters of ``direct``."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 is greedy decoding")
    max_tokens: int = Field(256, ge=1, le=8192)
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT


@register("direct", DirectParams)
async def direct(question: str, session: Session, params: DirectParams) -> StrategyResult:
    """One sample from the model; the answer is extracted from its text.

    A chat request that streams gets the tokens as they are decoded (``Session.token_deltas``)."""
    prompt = session.renderer.render_question(question, system=params.system_prompt)
    # a chat request's stop strings end the sample in the engine (nothing is decoded past them)
    stop = tuple(session.chat.stop)
    sampling = SamplingSettings(n=1, temperature=params.temperature, max_tokens=params.max_tokens, stop=stop)
    async with session.token_deltas() as watch:
        if watch is not None:  # streaming reads each token as it comes, with its logprob
            sampling = sampling.model_copy(update={"logprobs": 1})
        [result] = await session.generate([prompt], sampling, stop_when=watch)
    completion = result.completions[0]
    return StrategyResult(
        answer=extract_answer(completion.text),
        output=completion.text,
        cut_off=completion.finish_reason != "stop",
        trace={"finish_reason": completion.finish_reason, "completion_tokens": len(completion.token_ids)},
    )

"""``self_judge``: the policy model's own probability that a step is correct.

For each step the model is asked "Is the last step correct? Answer Yes or No." and
the score is P(Yes) / (P(Yes) + P(No)) from the top logprobs of its first answer token.
It needs no extra model, costs one prompt and one token per step (charged to the
request through its session), and is weak on small models — a baseline, not an oracle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from orchestrator.core.backends.base import SamplingSettings, TokenLogprob
from orchestrator.core.verification import PolicyModel, ScoreRequest
from verifiers.base import BaseVerifier

JUDGE_INSTRUCTION = "Is the last step of this solution correct? Answer Yes or No."
_TOP_LOGPROBS = 10


def judge_prompt_text(question: str, steps: Sequence[str]) -> str:
    """The user message asking the model to judge the last of ``steps``."""
    solution = "\n".join(step.strip() for step in steps)
    return f"Problem: {question}\n\nSolution so far:\n{solution}\n\n{JUDGE_INSTRUCTION}"


def probability_of_yes(first_token: TokenLogprob | None) -> float:
    """P(Yes) renormalised over Yes/No among the top alternatives; 0.5 when neither appears."""
    if first_token is None:
        return 0.5
    yes = sum(math.exp(lp) for token, lp in first_token.top.items() if token.strip().lower() == "yes")
    no = sum(math.exp(lp) for token, lp in first_token.top.items() if token.strip().lower() == "no")
    return yes / (yes + no) if yes + no > 0 else 0.5


class SelfJudgeVerifier(BaseVerifier):
    """Scores steps with the policy model's own Yes/No judgement."""

    name = "self_judge"
    summary = "the policy model's own P(Yes) that each step is right; one token per step"
    spends_budget = True  # one prompt and one token per step, through the request's session

    async def score(self, batch: Sequence[ScoreRequest], session: PolicyModel) -> list[list[float]]:
        prompts, owners = [], []
        for index, request in enumerate(batch):
            for depth in range(1, len(request.steps) + 1):
                user = judge_prompt_text(request.question, request.steps[:depth])
                prompts.append(session.renderer.render([{"role": "user", "content": user}]))
                owners.append(index)
        scores: list[list[float]] = [[] for _ in batch]
        if not prompts:
            return scores
        one_token = SamplingSettings(n=1, temperature=0.0, max_tokens=1, logprobs=_TOP_LOGPROBS)
        results = await session.generate(prompts, one_token)
        for owner, result in zip(owners, results, strict=True):
            logprobs = result.completions[0].logprobs
            scores[owner].append(probability_of_yes(logprobs[0] if logprobs else None))
        return scores

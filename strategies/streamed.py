"""Stopping as each sample finishes, not after a wave: the rest are aborted in the engine.

A wave waits for its slowest sample before anything is decided. Here ``in_flight`` samples
decode at once, each its own engine request (one tree id, so they share the prompt's KV);
the moment one finishes it is judged, and a finished one is replaced by a fresh one until
``limit`` have started. Once the judge says stop, every sample still decoding is aborted at
its next token (``stop_when``), and what it decoded until then is charged. Aborted samples
do not vote.

With ``in_flight`` equal to the limit this is its_hub's fire-everything-and-cancel; with a
few in flight it spends about what waves spend while never waiting on a straggler.

Example: four in flight, the first two finished samples agree and the judge stops: the other
two are cut where they are, and the answer is the two samples' answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio

from orchestrator.core.backends.base import SamplingSettings, TokenLogprob
from orchestrator.core.errors import BudgetExceededError
from orchestrator.core.session import Session
from orchestrator.core.verification import ScoreRequest
from strategies.selection import Sample, sample_of, split_steps

Judge = Callable[[Sequence[Sample]], bool]
"""Reads the finished samples (in finishing order) and says whether to stop now."""


@dataclass
class Drawn:
    """What a streamed draw produced: finished samples in finishing order, then the aborted ones."""

    finished: list[Sample] = field(default_factory=list)
    aborted: list[Sample] = field(default_factory=list)
    exhausted: bool = False
    stopped_early: bool = False

    @property
    def every(self) -> list[Sample]:
        return [*self.finished, *self.aborted]


@dataclass(frozen=True)
class StreamSampling:
    """How each sample is drawn, and how a finished one is scored (``verifier`` None: not scored)."""

    temperature: float
    top_p: float
    max_tokens: int
    logprobs: int
    verifier: str | None = None
    step_delimiter: str = "\n\n"
    vote_by: str = "exact"


async def draw_streamed(
    question: str,
    prompt: str,
    session: Session,
    how: StreamSampling,
    *,
    limit: int,
    in_flight: int,
    judge: Judge,
) -> Drawn:
    """Up to ``limit`` samples, ``in_flight`` decoding at once, each judged as it finishes."""
    drawn = Drawn()
    decided = False

    def cut(_tokens: Sequence[TokenLogprob]) -> bool:  # asked at every token of every sample
        return decided

    sampling = SamplingSettings(
        n=1,
        temperature=how.temperature,
        top_p=how.top_p,
        max_tokens=how.max_tokens,
        logprobs=max(how.logprobs, 1),  # the engine streams a sample's tokens only with logprobs
    )
    slots = anyio.Semaphore(in_flight)

    async def one() -> None:
        nonlocal decided
        try:
            [result] = await session.generate([prompt], sampling, stop_when=cut)
        except BudgetExceededError:
            drawn.exhausted, decided = True, True
            return
        finally:
            slots.release()
        completion = result.completions[0]
        if completion.finish_reason == "abort":
            drawn.aborted.append(_sample(completion, None, how, session, stopped=True))
            return
        score = await _score(question, completion, how, session) if how.verifier else None
        drawn.finished.append(_sample(completion, score, how, session, stopped=False))
        await session.emit({"type": "sample", "finished": len(drawn.finished), "answer": drawn.finished[-1].answer})
        if not decided and judge(drawn.finished):
            decided, drawn.stopped_early = True, True

    async with anyio.create_task_group() as group:
        for _ in range(limit):
            await slots.acquire()
            if decided:
                slots.release()
                break
            group.start_soon(one)
    return drawn


async def _score(question: str, completion, how: StreamSampling, session: Session) -> float | None:
    request = ScoreRequest(question, split_steps(completion.text, how.step_delimiter), completion.logprobs)
    try:
        [score] = await session.score(session.verifier(how.verifier or ""), [request])
    except BudgetExceededError:
        return None  # the sample still votes; it just cannot be accepted
    return score


def _sample(completion, score: float | None, how: StreamSampling, session: Session, *, stopped: bool) -> Sample:
    return sample_of(
        completion,
        score=score,
        top_k=how.logprobs,
        vocab_size=session.renderer.vocab_size,
        vote_by=how.vote_by,
        stopped=stopped,
    )

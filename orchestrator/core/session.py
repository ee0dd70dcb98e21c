"""The session: the only way a strategy acts on the world.

A strategy gets one session per request. ``generate`` runs a batch on the backend under
the request's budget meter (admission, deadline, charging); ``verifier(name)`` hands out
one of the runtime's verifiers and ``score`` runs it, charged to the request; ``embedder``
is the runtime's sentence embedder; ``emit`` publishes progress. Every request of a
session carries its search tree id, so they are pinned to one replica and share that
replica's prefix cache. Strategies never touch
vLLM, HTTP or Redis directly.

A chat request's options (``orchestrator.core.chat``) live here too: ``renderer`` puts
the conversation's earlier turns before every question, ``generate`` seeds each engine
call from the request's seed, and ``token_deltas`` lets ``direct`` publish its tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio

from orchestrator.core.backends.base import (
    GenerationBackend,
    GenerationResult,
    Prompt,
    SamplingSettings,
    StopCheck,
)
from orchestrator.core.budget import BudgetMeter
from orchestrator.core.chat import ChatOptions, ConversationRenderer
from orchestrator.core.errors import ConfigurationError
from orchestrator.core.rendering import ChatRenderer
from orchestrator.core.verification import (
    Aggregation,
    ScoreRequest,
    TextEmbedder,
    Verifier,
    VerifierSource,
    aggregate,
)

EventSink = Callable[[dict[str, Any]], Awaitable[None]]
DELTA_EVERY_S = 0.1  # how often streamed tokens are published: one Redis write per tenth of a second


class Session:
    """Generate, score, report progress and meter, for one request."""

    def __init__(
        self,
        backend: GenerationBackend,
        meter: BudgetMeter,
        *,
        verifiers: VerifierSource | None = None,
        embedder: TextEmbedder | None = None,
        emit: EventSink | None = None,
        chat: ChatOptions | None = None,
        served_model: str | None = None,
        routing_policy: object | None = None,
        tree_id: str | None = None,
    ) -> None:
        self.backend = backend
        self.meter = meter
        # the model's catalogue name (what policies and trained verifiers record), and the routing
        # policy the runtime chose for it once (a ``strategies.policy.Policy``; None: none fits it)
        self.served_model = served_model or (backend.model.name if backend is not None else "")
        self.routing_policy = routing_policy
        # every engine request of this session goes to one replica of a fleet (its prefix cache)
        self.tree_id = tree_id or f"tree-{uuid.uuid4().hex[:12]}"
        self.chat = chat or ChatOptions()
        self._verifiers = verifiers
        self._embedder = embedder
        self._emit = emit
        self._renderer = ConversationRenderer(backend.renderer, self.chat.history) if self.chat.history else None
        self._engine_calls = 0

    def verifier(self, name: str) -> Verifier:
        """One of the runtime's verifiers, by name (built once per process, not per request)."""
        if self._verifiers is None:
            raise ConfigurationError(f"this session was opened without verifiers, so {name!r} is unavailable")
        return self._verifiers.get(name)

    @property
    def embedder(self) -> TextEmbedder:
        """The runtime's sentence embedder (built once per process, as the verifiers are)."""
        if self._embedder is None:
            raise ConfigurationError("this session was opened without a sentence embedder: meaning needs one")
        return self._embedder

    async def emit(self, event: dict[str, Any]) -> None:
        """Publish a progress event (a search depth, a voting wave) to whoever follows the request."""
        if self._emit is not None:
            await self._emit(event)

    @property
    def renderer(self) -> ChatRenderer:
        """The backend's renderer; for a chat request, one that puts the conversation before each question."""
        return self._renderer or self.backend.renderer

    @asynccontextmanager
    async def token_deltas(self) -> AsyncIterator[Callable[[Sequence[Any]], bool] | None]:
        """For a request that asked for its tokens: a ``stop_when`` for ``generate`` that never
        stops a sample but publishes its new text as ``delta`` events (every ``DELTA_EVERY_S``,
        flushed at the end). Otherwise None. Needs one sample and ``sampling.logprobs``.

        Tokens are decoded one by one, so a character split over several tokens comes out as
        U+FFFD: streaming stops before the first one, and the finished text brings the rest.
        An error from the block comes out as itself, not wrapped in an exception group.
        """
        if not self.chat.stream_tokens:
            yield None
            return
        seen: Sequence[Any] = ()
        published, whole = 0, True

        def watch(tokens: Sequence[Any]) -> bool:  # every decoded token (``TokenLogprob``) so far
            nonlocal seen
            seen = tokens  # the backend's own growing list: no copy per token
            return False

        async def publish() -> None:
            nonlocal published, whole
            if not whole or len(seen) <= published:
                return
            text = "".join(token.token for token in seen[published:])
            published = len(seen)
            if "\ufffd" in text:  # part of a character: the rest arrives with the finished text
                text, whole = text[: text.index("\ufffd")], False
            if text:
                await self.emit({"type": "delta", "text": text})

        async def publish_every_tick() -> None:
            while True:
                await anyio.sleep(DELTA_EVERY_S)
                await publish()

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(publish_every_tick)
                try:
                    yield watch
                finally:
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as raised:  # the block's own error, as the block raised it
            if len(raised.exceptions) == 1:
                raise raised.exceptions[0] from None
            raise
        with anyio.CancelScope(shield=True):
            await publish()

    async def generate(
        self,
        prompts: Sequence[Prompt],
        sampling: SamplingSettings,
        *,
        n_per_prompt: Sequence[int] | None = None,
        stop_when: StopCheck | None = None,
    ) -> list[GenerationResult]:
        """Generate for all prompts in one batch, within the budget; charges the meter.

        ``stop_when`` aborts a sample in the engine once it returns True on its tokens so far
        (``GenerationBackend.generate``); what it decoded until then is charged.

        ``n_per_prompt`` gives each prompt its own number of samples (default ``sampling.n``).

        ``max_tokens`` may be lowered to what the budget still allows. Raises
        ``BudgetExceededError`` when no budget is left or the deadline passes mid-call
        (the engine requests are then aborted). Example::

            [result] = await session.generate([session.renderer.render_question("2+2?")], SamplingSettings(n=4))
        """
        samples = list(n_per_prompt) if n_per_prompt is not None else [sampling.n] * len(prompts)
        if self.chat.seed is not None and sampling.seed is None:  # each engine call its own seed, in call order
            sampling = sampling.model_copy(update={"seed": self.chat.seed + self._engine_calls})
            self._engine_calls += 1
        lengths = [len(p) if isinstance(p, list) else len(self.renderer.encode(p)) for p in prompts]
        with self.meter.admit(prompt_tokens=lengths, samples=samples, max_tokens=sampling.max_tokens) as allowed:
            if allowed != sampling.max_tokens:
                sampling = sampling.model_copy(update={"max_tokens": allowed})
            with self._within_deadline("generation"):
                results = await self.backend.generate(
                    prompts, sampling, tree_id=self.tree_id, n_per_prompt=n_per_prompt, stop_when=stop_when
                )
            for result in results:
                lengths = [len(c.token_ids) for c in result.completions]
                self.meter.charge_generation(
                    result.prompt_tokens, result.cached_prompt_tokens, lengths, resends=result.resends
                )
        return results

    async def score(
        self, verifier: Verifier, batch: Sequence[ScoreRequest], aggregation: Aggregation = "last"
    ) -> list[float]:
        """Score candidates with a verifier (charged to this request); one aggregated score each."""
        return [aggregate(scores, aggregation) for scores in await self.score_steps(verifier, batch)]

    async def score_steps(self, verifier: Verifier, batch: Sequence[ScoreRequest]) -> list[list[float]]:
        """Every step's score for each candidate; the verifier calls are charged to this request."""
        if not batch:
            return []
        if verifier.spends_budget:  # a free check (a calculator) may run on a spent budget
            self.meter.check()
        with self._within_deadline("verification"):  # a verifier's time is the request's time too
            step_scores = await verifier.score(batch, self)
        self.meter.charge_verifier(len(batch))
        return step_scores

    @contextmanager
    def _within_deadline(self, what: str) -> Iterator[None]:
        """Run the block within the request's deadline; past it, ``BudgetExceededError``."""
        remaining_s = self.meter.remaining_seconds()
        if remaining_s is None:
            yield
            return
        try:
            with anyio.fail_after(max(remaining_s, 0.0)):
                yield
        except TimeoutError:
            message = f"the deadline of {self.meter.budget.deadline_s} s passed during {what}"
            raise self.meter.exhausted("deadline", message) from None

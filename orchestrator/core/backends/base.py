"""The generation backend interface: the only contract the rest of the service knows.

A backend takes a batch of prompts and one set of sampling settings and returns,
per prompt, its completions and its token accounting. Implementations:
``InProcessBackend`` (vLLM ``AsyncLLM`` in this process), ``RemoteBackend``
(vLLM OpenAI-compatible servers over HTTP) and ``ScriptedBackend`` (a fake for
unit tests of pure logic).

Everything shared lives in ``GenerationBackend``: prompt tokenisation through the
one renderer, the context-window check, request ids, and running the batch as
concurrent requests so the engine schedules them in the same steps.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.costmodel import ModelShape
from orchestrator.core.errors import ConfigurationError, InvalidRequestError, PromptTooLongError, TTCError
from orchestrator.core.rendering import ChatRenderer
from orchestrator.core.settings import Settings

Prompt = str | Sequence[int]
"""A prompt is rendered text (tokenised without extra special tokens) or token ids."""


class SamplingSettings(BaseModel):
    """How to sample: the subset of vLLM's sampling parameters the strategies use."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(1, ge=1, le=256, description="completions per prompt (they share the prompt's KV)")
    temperature: float = Field(0.7, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, description="completion tokens per sample")
    stop: tuple[str, ...] = Field((), description="stop strings, e.g. the step delimiter")
    include_stop_str_in_output: bool = False
    logprobs: int | None = Field(None, ge=0, le=20, description="top-k logprobs per sampled token")
    seed: int | None = Field(None, description="the request's sampling seed (where the backend seeds_requests)")

    @model_validator(mode="after")
    def _greedy_means_one_sample(self) -> SamplingSettings:
        if self.temperature == 0.0 and self.n > 1:  # vLLM refuses it: greedy samples would be identical
            raise ValueError("n > 1 needs temperature > 0 (greedy decoding makes every sample identical)")
        return self


@dataclass(frozen=True)
class TokenLogprob:
    """The sampled token's log-probability and the top alternatives at that position."""

    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    """One sampled continuation of a prompt."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # "stop" (EOS or a stop string), "length" or "abort"
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True)
class GenerationResult:
    """Everything one prompt produced, with its token accounting."""

    request_id: str
    completions: tuple[Completion, ...]
    prompt_tokens: int
    cached_prompt_tokens: int  # prompt tokens served from the prefix cache
    resends: int = 0  # times it was sent again because its replica died while running it

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.token_ids) for c in self.completions)


@dataclass(frozen=True)
class BackendCounters:
    """A snapshot of engine counters (summed over replicas for a fleet)."""

    prefix_cache_queries: int = 0  # prompt tokens looked up in the prefix cache
    prefix_cache_hits: int = 0  # of which found there
    kv_cache_usage: float = 0.0  # fraction of KV blocks in use, 0..1 (max over replicas)
    requests_running: int = 0
    requests_waiting: int = 0
    generation_tokens: int = 0  # tokens the engine has decoded, aborted requests' included

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.prefix_cache_hits / self.prefix_cache_queries if self.prefix_cache_queries else 0.0


@dataclass(frozen=True)
class ModelInfo:
    """What the service needs to know about the served model."""

    name: str
    max_model_len: int
    shape: ModelShape


StopCheck = Callable[[Sequence[TokenLogprob]], bool]
"""Looks at a sample's tokens so far (their top-k logprobs) and says whether to stop decoding it now."""


def new_request_id(tree_id: str | None = None) -> str:
    """A unique engine request id; prefixed by the tree id so engine logs group a search."""
    suffix = uuid.uuid4().hex[:16]
    return f"{tree_id}-{suffix}" if tree_id else f"req-{suffix}"


def first_service_error(group: BaseExceptionGroup) -> BaseException:
    """One request of a batch failed (and the others were cancelled): surface its error.

    Callers catch ``TTCError`` subclasses, not exception groups; anything else (a bug)
    keeps the whole group for debugging.
    """
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            error = first_service_error(error)
        if isinstance(error, TTCError):
            return error
    return group


class GenerationBackend(abc.ABC):
    """Base class of every backend: batch submission, validation, lifecycle.

    Subclasses implement ``_generate_one`` for one tokenised prompt, plus
    ``abort``, ``health``, ``counters`` and ``aclose``; those that ``open_backend`` can
    start also implement ``open(settings)``.
    """

    seeds_requests: bool = True
    """Whether a request's ``sampling.seed`` is safe to pass (vLLM's CPU build crashes on them)."""

    def __init__(self, renderer: ChatRenderer, model: ModelInfo) -> None:
        self.renderer = renderer
        self.model = model

    async def generate(
        self,
        prompts: Sequence[Prompt],
        sampling: SamplingSettings,
        *,
        tree_id: str | None = None,
        request_ids: Sequence[str] | None = None,
        n_per_prompt: Sequence[int] | None = None,
        stop_when: StopCheck | None = None,
    ) -> list[GenerationResult]:
        """Generate for every prompt concurrently; results come back in prompt order.

        ``n_per_prompt`` overrides ``sampling.n`` prompt by prompt (tree search expands
        each node into its own number of children, all in one batch).

        ``stop_when`` streams each sample's tokens as they are decoded and aborts the request in
        the engine as soon as it returns True; the sample comes back cut short, with
        ``finish_reason="abort"`` and the tokens decoded so far (which were computed, so they count).
        It needs ``n == 1`` per prompt and ``sampling.logprobs``.

        All prompts of one call (and all calls with one ``tree_id``) go to the same
        engine replica, so siblings share the prefix cache. Cancelling the caller
        aborts every request of the batch. Example::

            [result] = await backend.generate(["<rendered prompt>"], SamplingSettings(n=4))
        """
        if request_ids is not None and len(request_ids) != len(prompts):
            raise InvalidRequestError("request_ids must have one id per prompt")
        if n_per_prompt is not None and len(n_per_prompt) != len(prompts):
            raise InvalidRequestError("n_per_prompt must have one count per prompt")
        if stop_when is not None and (sampling.n != 1 or n_per_prompt is not None or not sampling.logprobs):
            raise InvalidRequestError("stop_when needs one sample per prompt and sampling.logprobs")
        ids = list(request_ids) if request_ids is not None else [new_request_id(tree_id) for _ in prompts]
        counts = list(n_per_prompt) if n_per_prompt is not None else [sampling.n] * len(prompts)
        jobs = [
            self._prepare(prompt, sampling if n == sampling.n else sampling.model_copy(update={"n": n}))
            for prompt, n in zip(prompts, counts, strict=True)
        ]
        results: list[GenerationResult | None] = [None] * len(jobs)

        async def run(index: int) -> None:
            token_ids, settings = jobs[index]
            if stop_when is None:
                results[index] = await self._generate_one(token_ids, settings, ids[index], tree_id)
            else:
                results[index] = await self._generate_until(token_ids, settings, ids[index], tree_id, stop_when)

        try:
            async with anyio.create_task_group() as group:
                for index in range(len(jobs)):
                    group.start_soon(run, index)
        except BaseExceptionGroup as group_error:
            raise first_service_error(group_error) from None
        return [result for result in results if result is not None]

    def _prepare(self, prompt: Prompt, sampling: SamplingSettings) -> tuple[list[int], SamplingSettings]:
        """Tokenise once (identically for every backend) and fit the request in the context."""
        token_ids = self.renderer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not token_ids:
            raise InvalidRequestError("the prompt is empty")
        room = self.model.max_model_len - len(token_ids)
        if room < 1:
            raise PromptTooLongError(
                f"the prompt has {len(token_ids)} tokens but the model's context holds "
                f"{self.model.max_model_len}; shorten the question or context"
            )
        if sampling.max_tokens > room:  # the engine would reject it; shorter output is the useful answer
            sampling = sampling.model_copy(update={"max_tokens": room})
        return token_ids, sampling

    @classmethod
    async def open(cls, settings: Settings) -> GenerationBackend:
        """Start this backend as the settings describe (the backends ``open_backend`` names)."""
        raise ConfigurationError(f"{cls.__name__} is not started from settings")

    @abc.abstractmethod
    async def _generate_one(
        self, token_ids: list[int], sampling: SamplingSettings, request_id: str, tree_id: str | None
    ) -> GenerationResult:
        """Run one prompt to completion on the engine."""

    async def _generate_until(
        self, token_ids: list[int], sampling: SamplingSettings, request_id: str, tree_id: str | None, stop: StopCheck
    ) -> GenerationResult:
        """Decode one sample, streamed, until ``stop`` says so (then abort it) or it finishes."""
        raise InvalidRequestError(f"{type(self).__name__} cannot stop a sample while it is decoded")

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Abort a running request; unknown or finished ids are ignored."""

    @abc.abstractmethod
    async def health(self) -> None:
        """Return if the backend can serve; raise a ``BackendError`` saying why not."""

    @abc.abstractmethod
    async def counters(self) -> BackendCounters:
        """Current engine counters."""

    async def replica_health(self) -> dict[str, str]:
        """Each replica's state for a fleet of servers: ``"up"`` or why it is down. Empty for an
        engine in this process (``health`` says all there is)."""
        return {}

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release engines, connections and processes."""

    def stopping(self) -> None:  # noqa: B027 (most backends have nothing to start: a no-op is right)
        """The process is shutting down (a signal arrived): start nothing new, such as an engine rebuild."""

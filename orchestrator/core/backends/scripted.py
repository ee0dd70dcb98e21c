"""A scripted fake backend, for unit tests of pure logic only (strategies' bookkeeping,
budget enforcement, selection rules). Anything about generation itself is tested on
the real engine.

A script maps the prompt text to the completions to return; tokens are characters,
so counts are easy to predict in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from orchestrator.core.backends.base import (
    BackendCounters,
    Completion,
    GenerationBackend,
    GenerationResult,
    ModelInfo,
    SamplingSettings,
    StopCheck,
    TokenLogprob,
)
from orchestrator.core.costmodel import ModelShape
from orchestrator.core.rendering import ChatRenderer

Script = Callable[[str, SamplingSettings], Sequence[str]]
"""Given the prompt text and sampling settings, the texts of the ``n`` completions."""

TINY_SHAPE = ModelShape(parameters=1_000_000, layers=2, query_heads=2, kv_heads=1, head_dim=8)


class CharTokenizer:
    """One token per character; a minimal chat template."""

    chat_template = "plain"

    def apply_chat_template(self, messages, tokenize: bool = False, add_generation_prompt: bool = True) -> str:
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    all_special_tokens: tuple[str, ...] = ()
    vocab_size = 0x110000  # one token per Unicode code point

    def encode(self, text: str, add_special_tokens: bool = False, split_special_tokens: bool = False) -> list[int]:
        return [ord(ch) for ch in text]

    def decode(self, token_ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(t) for t in token_ids)


class ScriptedBackend(GenerationBackend):
    """Returns scripted completions; records every call for assertions."""

    def __init__(
        self,
        script: Script,
        *,
        max_model_len: int = 4096,
        delay_s: float | Callable[[str], float] = 0.0,
        token_logprobs: Callable[[str], tuple[float, float]] = lambda text: (-0.1, -8.0),
        token_delay_s: float = 0.0,
    ) -> None:
        """``token_logprobs(text)``: (the sampled token's, each top alternative's) log-probability at
        every position of a completion, for tests that read confidence: (-0.1, -8) is a confident
        trace, (-1.6, -1.6) an unsure one. ``token_delay_s``: a streamed sample (``stop_when``) takes
        this long per token, so concurrent samples finish in order of length, as in an engine."""
        super().__init__(ChatRenderer(CharTokenizer()), ModelInfo("scripted", max_model_len, TINY_SHAPE))
        self.script = script
        self.delay_s = delay_s
        self.token_logprobs = token_logprobs
        self.token_delay_s = token_delay_s
        self.calls: list[tuple[str, SamplingSettings, str | None]] = []
        self.aborted: list[str] = []
        self.running: dict[str, str] = {}  # request id -> prompt of each generation not yet returned
        self._seen_prompts: set[str] = set()
        self._cache_queries = self._cache_hits = 0

    async def _generate_one(
        self, token_ids: list[int], sampling: SamplingSettings, request_id: str, tree_id: str | None
    ) -> GenerationResult:
        prompt = self.renderer.decode(token_ids)
        self.calls.append((prompt, sampling, tree_id))
        delay = self.delay_s(prompt) if callable(self.delay_s) else self.delay_s
        if delay:
            self.running[request_id] = prompt
            try:
                await anyio.sleep(delay)  # a long generation, cancellable like a real one
            finally:
                del self.running[request_id]
        texts = list(self.script(prompt, sampling))[: sampling.n]
        completions = tuple(self._completion(text, sampling) for text in texts)
        cached = len(token_ids) if prompt in self._seen_prompts else 0  # a perfect prefix cache
        self._seen_prompts.add(prompt)
        self._cache_queries, self._cache_hits = self._cache_queries + len(token_ids), self._cache_hits + cached
        return GenerationResult(request_id, completions, len(token_ids), cached)

    def _completion(self, text: str, sampling: SamplingSettings) -> Completion:
        clipped = text[: sampling.max_tokens]
        reason = "length" if len(text) > sampling.max_tokens else "stop"
        return Completion(clipped, tuple(ord(ch) for ch in clipped), reason, self._logprobs(text, clipped, sampling))

    def _logprobs(self, text: str, clipped: str, sampling: SamplingSettings) -> tuple[TokenLogprob, ...] | None:
        if not sampling.logprobs:
            return None
        chosen, alternative = self.token_logprobs(text)
        others = {f"<alt{i}>": alternative for i in range(sampling.logprobs - 1)}
        return tuple(TokenLogprob(token=ch, logprob=chosen, top={ch: chosen, **others}) for ch in clipped)

    async def _generate_until(
        self, token_ids: list[int], sampling: SamplingSettings, request_id: str, tree_id: str | None, stop: StopCheck
    ) -> GenerationResult:
        """The scripted sample, token by token, cut where ``stop`` says (as an engine abort would)."""
        [whole] = (await self._generate_one(token_ids, sampling, request_id, tree_id)).completions
        logprobs = whole.logprobs or ()
        for length in range(1, len(logprobs)):
            if self.token_delay_s:
                await anyio.sleep(self.token_delay_s)
            if stop(logprobs[:length]):
                self.aborted.append(request_id)
                cut = Completion(whole.text[:length], whole.token_ids[:length], "abort", logprobs[:length])
                return GenerationResult(request_id, (cut,), len(token_ids), 0)
        return GenerationResult(request_id, (whole,), len(token_ids), 0)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def health(self) -> None:
        return None

    async def counters(self) -> BackendCounters:
        return BackendCounters(prefix_cache_queries=self._cache_queries, prefix_cache_hits=self._cache_hits)

    async def aclose(self) -> None:
        return None

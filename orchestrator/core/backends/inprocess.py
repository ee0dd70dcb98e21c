"""In-process vLLM (``AsyncLLM``): the embedded CPU default and the single-GPU mode.

The engine core runs in a child process. If it dies (a per-request seed on a large CPU batch is one way),
every in-flight request fails with ``EngineDiedError`` and a fresh engine is built in
the background; requests arriving meanwhile wait for it instead of failing. A rebuild that
fails ``REBUILD_TRIES`` times in a row gives up: requests and ``health`` then say so with
``engine_died``. A backend that is closing (or whose process is stopping: ``stopping()``)
never rebuilds, so Ctrl-C — which reaches the engine core too — leaves no engine behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

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
from orchestrator.core.costmodel import load_model_shape
from orchestrator.core.errors import (
    BackendError,
    BackendUnavailableError,
    EngineDiedError,
    InvalidRequestError,
    RequestAbortedError,
)
from orchestrator.core.model_catalog import model_source
from orchestrator.core.rendering import ChatRenderer
from orchestrator.core.settings import EngineOptions, Settings

log = logging.getLogger(__name__)
REBUILD_TRIES = 3
REBUILD_PAUSE_S = 5.0
DEATH_GRACE_S = 2.0  # a signal that kills the engine core reaches this process too: wait to see it


class _EngineCounters:
    """Receives the engine's per-step statistics (a vLLM stat-logger sink)."""

    def __init__(self) -> None:
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0
        self.kv_cache_usage = 0.0
        self.requests_running = 0
        self.requests_waiting = 0
        self.generation_tokens = 0

    def logger_factory(self):
        """A ``StatLoggerFactory`` feeding this sink; vLLM keeps its own loggers too."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        sink = self

        class _Sink(StatLoggerBase):
            def __init__(self, vllm_config, engine_index: int = 0) -> None:
                pass

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0) -> None:
                if iteration_stats is not None:
                    sink.generation_tokens += iteration_stats.num_generation_tokens
                if scheduler_stats is None:
                    return
                sink.prefix_cache_queries += scheduler_stats.prefix_cache_stats.queries
                sink.prefix_cache_hits += scheduler_stats.prefix_cache_stats.hits
                sink.kv_cache_usage = scheduler_stats.kv_cache_usage
                sink.requests_running = scheduler_stats.num_running_reqs
                sink.requests_waiting = scheduler_stats.num_waiting_reqs

            def log_engine_initialized(self) -> None:
                pass

        return _Sink

    def snapshot(self) -> BackendCounters:
        return BackendCounters(
            prefix_cache_queries=self.prefix_cache_queries,
            prefix_cache_hits=self.prefix_cache_hits,
            kv_cache_usage=self.kv_cache_usage,
            requests_running=self.requests_running,
            requests_waiting=self.requests_waiting,
            generation_tokens=self.generation_tokens,
        )


class InProcessBackend(GenerationBackend):
    """vLLM ``AsyncLLM`` in this process, prefix caching on, restarted if its core dies."""

    def __init__(self, model: str, renderer: ChatRenderer, options: EngineOptions) -> None:
        super().__init__(renderer, ModelInfo(model, options.max_model_len, load_model_shape(model)))
        self.seeds_requests = not _on_cpu()  # a per-request seed crashes the CPU engine on a large batch
        self.model_dir = model
        self.options = options
        self._counters = _EngineCounters()
        self._engine: Any = None
        self._ready = anyio.Event()
        self._restart_lock = anyio.Lock()
        self._restart_task: asyncio.Task | None = None
        self._closing = False
        self._gave_up: EngineDiedError | None = None
        self.restarts = 0

    @classmethod
    async def open(cls, settings: Settings) -> InProcessBackend:
        """Start the engine on the configured model (the embedded one is pulled on first use)."""
        return await cls.start(resolve_model(settings), settings.engine, settings.tokenizer)

    @classmethod
    async def start(cls, model: str, options: EngineOptions, tokenizer: str = "") -> InProcessBackend:
        """Load the tokenizer and build the engine (about 30 s on 2 CPU cores).

        ``model`` is a local model directory or a hub name.
        """
        renderer = ChatRenderer.from_pretrained(tokenizer or model)
        backend = cls(model, renderer, options)
        await backend._build_engine()
        return backend

    async def _build_engine(self) -> None:
        # Built in a worker thread: construction blocks for tens of seconds, and the
        # service's health endpoints must keep answering meanwhile.
        self._engine = await anyio.to_thread.run_sync(self._construct_engine)
        self._ready.set()

    def _construct_engine(self) -> Any:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.options.cpu_kv_cache_space_gib))
        if self.options.cpu_use_all_cores:
            use_every_cpu_core()
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(
            model=str(self.model_dir),
            max_model_len=self.options.max_model_len,
            dtype=engine_dtype(self.options.dtype),
            enforce_eager=self.options.enforce_eager,
            seed=self.options.seed,
            enable_prefix_caching=True,
            gpu_memory_utilization=self.options.gpu_memory_utilization,
            max_num_seqs=self.options.max_num_seqs,
            block_size=self.options.block_size,
            **self.options.extra,
        )
        try:
            return AsyncLLM.from_engine_args(args, stat_loggers=[self._counters.logger_factory()])
        except Exception as error:  # vLLM raises many kinds at start-up; name the setting
            raise BackendUnavailableError(
                f"the vLLM engine failed to start for {self.model_dir} ({type(error).__name__}: {error}); "
                "check TTC_MODEL and TTC_ENGINE__* settings"
            ) from error

    async def _generate_one(
        self, token_ids: list[int], sampling: SamplingSettings, request_id: str, tree_id: str | None
    ) -> GenerationResult:
        from vllm.sampling_params import RequestOutputKind

        engine = await self._live_engine()
        # FINAL_ONLY: no per-token copies, the caller wants the whole result
        params = _sampling_params(sampling, RequestOutputKind.FINAL_ONLY)
        final = None
        with self._engine_errors(engine):
            async for output in engine.generate({"prompt_token_ids": token_ids}, params, request_id=request_id):
                final = output
        if final is None or not final.finished or any(c.finish_reason == "abort" for c in final.outputs):
            raise RequestAbortedError(f"request {request_id} was aborted")
        return _to_result(request_id, final, len(token_ids))

    async def _generate_until(
        self, token_ids: list[int], sampling: SamplingSettings, request_id: str, tree_id: str | None, stop: StopCheck
    ) -> GenerationResult:
        from vllm.sampling_params import RequestOutputKind

        engine = await self._live_engine()
        # DELTA: each step's new tokens, to judge the sample as it grows
        params = _sampling_params(sampling.model_copy(update={"n": 1}), RequestOutputKind.DELTA)
        text, ids, logprobs, cached, finish = "", [], [], 0, None
        with self._engine_errors(engine):
            async for output in engine.generate({"prompt_token_ids": token_ids}, params, request_id=request_id):
                delta = output.outputs[0]
                text, ids = text + delta.text, ids + list(delta.token_ids)
                logprobs += _to_logprobs(delta.token_ids, delta.logprobs) or ()
                cached = int(output.num_cached_tokens or cached)
                finish = delta.finish_reason
                if output.finished:
                    break
                if stop(logprobs):
                    await engine.abort(request_id)  # the engine stops decoding it now
                    finish = "abort"
                    break
        completion = Completion(text, tuple(ids), finish or "abort", tuple(logprobs))
        return GenerationResult(request_id, (completion,), len(token_ids), cached)

    @contextmanager
    def _engine_errors(self, engine: Any) -> Iterator[None]:
        """vLLM's failures as the service's: a dead engine (restarted) or a request it rejected."""
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            yield
        except EngineDeadError:
            self._schedule_restart(engine)
            raise EngineDiedError(
                "the inference engine died while this request was running; it is being restarted — retry shortly"
            ) from None
        except ValueError as error:  # vLLM's own request validation
            raise InvalidRequestError(f"the engine rejected the request: {error}") from None

    async def _live_engine(self) -> Any:
        """The engine, once it is ready (waiting out a rebuild), or the reason there is none."""
        with anyio.fail_after(600):  # a generous bound: an engine mid-restart never hangs a caller
            await self._ready.wait()
        if self._gave_up is not None:
            raise self._gave_up
        if self._engine is None:
            raise BackendUnavailableError("the inference engine is shut down: the service is stopping")
        return self._engine

    def stopping(self) -> None:
        """The process is shutting down (a signal arrived): an engine that dies now stays dead."""
        self._closing = True

    def _schedule_restart(self, dead_engine: Any) -> None:
        if self._engine is not dead_engine or not self._ready.is_set() or self._gave_up is not None:
            return  # another request already noticed
        self._ready = anyio.Event()
        # The restart outlives the failing request: run it on the event loop, not in its scope.
        self._restart_task = asyncio.get_running_loop().create_task(self._restart(dead_engine))

    async def _restart(self, dead_engine: Any) -> None:
        async with self._restart_lock:
            await anyio.sleep(DEATH_GRACE_S)
            await shut_down_engine(dead_engine)
            failures: list[str] = []
            while not self._closing and len(failures) < REBUILD_TRIES:
                log.error("inference engine died; rebuilding it (try %d of %d)", len(failures) + 1, REBUILD_TRIES)
                try:
                    await self._build_engine()
                except BackendError as error:
                    failures.append(str(error))
                    log.error("engine rebuild failed: %s", error)
                    await anyio.sleep(REBUILD_PAUSE_S)
                    continue
                if self._closing:  # stopped while it was being built: it must not outlive the process
                    await self._discard_engine()
                    return
                self.restarts += 1
                log.warning("inference engine restarted (%d restarts so far)", self.restarts)
                return
            if not self._closing:
                self._gave_up = EngineDiedError(
                    f"the inference engine died and could not be rebuilt in {REBUILD_TRIES} tries "
                    f"(last: {failures[-1] if failures else 'unknown'}); restart the service"
                )
            self._engine = None
            self._ready.set()  # wake the waiters: they fail with the reason instead of waiting

    async def _discard_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            with anyio.CancelScope(shield=True):
                await shut_down_engine(engine)

    async def abort(self, request_id: str) -> None:
        if self._engine is not None and self._ready.is_set():
            await self._engine.abort(request_id)

    async def health(self) -> None:
        if self._gave_up is not None:
            raise self._gave_up
        if not self._ready.is_set():
            raise BackendUnavailableError("the inference engine is starting or restarting")
        if self._engine is None:
            raise BackendUnavailableError("the inference engine is shut down: the service is stopping")
        if self._engine.errored:
            raise EngineDiedError("the inference engine has died; it is being restarted")

    async def counters(self) -> BackendCounters:
        counters = self._counters.snapshot()
        engine = self._engine
        if engine is not None and engine.output_processor.get_num_unfinished_requests() == 0:
            # Engine statistics arrive with engine steps; an idle engine sends none, so the
            # last running/waiting figures would stay stale after the final request ends.
            counters = replace(counters, requests_running=0, requests_waiting=0)
        return counters

    async def aclose(self) -> None:
        self._closing = True
        restart, self._restart_task = self._restart_task, None
        if restart is not None and not restart.done():
            with anyio.CancelScope(shield=True):  # it sees _closing and stops (a build under way finishes first)
                await restart
        await self._discard_engine()


def use_every_cpu_core() -> None:
    """Let this process's vLLM engines decode on every core (unless the environment says otherwise).

    vLLM reserves a core for the frontend by default; with FINAL_ONLY outputs the frontend is
    nearly idle, and decoding on every core measured 1.75x faster here."""
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def resolve_model(settings: Settings) -> str:
    """The model to load for ``TTC_MODEL``: a catalogue model (pulled on first use on a CPU), a directory
    or a hub name."""
    return model_source(settings.model, settings.model_cache_dir, on_cpu=_on_cpu)


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has bfloat16 instructions (AVX-512 BF16 or AMX), read from its flags."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def engine_dtype(configured: str | None, *, on_cpu: bool | None = None, bf16: bool | None = None) -> str:
    """The dtype the engine runs in: the configured one, else the fastest this hardware has.

    On a CPU without bf16 instructions vLLM's bfloat16 path falls back to a plain torch
    matmul ("Failed to create oneDNN linear"), measured 3.3x slower than float32 there;
    so float32, unless the CPU has them. On a GPU: ``auto`` (the model's own dtype).
    Example: ``engine_dtype(None, on_cpu=True, bf16=False) == "float32"``.
    """
    if configured:
        return configured
    if on_cpu is None:
        on_cpu = _on_cpu()
    if not on_cpu:
        return "auto"
    return "bfloat16" if (cpu_has_bf16() if bf16 is None else bf16) else "float32"


def _on_cpu() -> bool:
    """Whether vLLM runs on the CPU here (its CPU build)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


async def _stop_output_handler(engine: Any) -> None:
    """Stop the engine's output task before the engine core.

    ``AsyncLLM.shutdown`` stops the core first; its output task, still reading, would then
    log the core's exit as an ``EngineDeadError`` on every clean shutdown.
    """
    handler = getattr(engine, "output_handler", None)
    if handler is None or handler.done():
        return
    handler.cancel()
    await asyncio.wait([handler], timeout=5)


async def shut_down_engine(engine: Any) -> None:
    """Stop the engine's output task, then its core (blocking, so in a worker thread), then
    release its ZMQ context — on a clean close and for a dead engine alike.

    vLLM closes its client's sockets on shutdown (on this event loop, scheduled from the
    thread) but leaves the ZMQ context to the garbage collector, which destroys it with a
    ResourceWarning at some later, unrelated moment. The output task must be gone first:
    it reads from those sockets.
    """
    await _stop_output_handler(engine)
    await anyio.to_thread.run_sync(_shutdown_quietly, engine)
    await anyio.lowlevel.checkpoint()  # let the socket closing vLLM scheduled on this loop run first
    resources = getattr(getattr(engine, "engine_core", None), "resources", None)
    context = getattr(resources, "ctx", None)
    if context is not None and not context.closed:
        context.destroy(linger=0)


def _shutdown_quietly(engine: Any) -> None:
    try:
        engine.shutdown()
    except Exception:  # a dead engine may fail to shut down cleanly; nothing left to save
        log.debug("engine shutdown raised", exc_info=True)


def _sampling_params(sampling: SamplingSettings, output_kind: Any) -> Any:
    """vLLM's ``SamplingParams`` for ours, with the given output kind."""
    from vllm import SamplingParams

    return SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        stop=list(sampling.stop),
        include_stop_str_in_output=sampling.include_stop_str_in_output,
        logprobs=sampling.logprobs,
        seed=sampling.seed,
        output_kind=output_kind,
    )


def _to_result(request_id: str, output: Any, prompt_tokens: int) -> GenerationResult:
    completions = tuple(
        Completion(
            text=choice.text,
            token_ids=tuple(choice.token_ids),
            finish_reason=choice.finish_reason or "abort",
            logprobs=_to_logprobs(choice.token_ids, choice.logprobs),
        )
        for choice in output.outputs
    )
    return GenerationResult(
        request_id=request_id,
        completions=completions,
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=int(output.num_cached_tokens or 0),
    )


def _to_logprobs(token_ids: Any, positions: Any) -> tuple[TokenLogprob, ...] | None:
    if positions is None:
        return None
    result = []
    for token_id, candidates in zip(token_ids, positions, strict=False):
        chosen = candidates[token_id]
        top = {lp.decoded_token or "": lp.logprob for lp in candidates.values()}
        result.append(TokenLogprob(token=chosen.decoded_token or "", logprob=chosen.logprob, top=top))
    return tuple(result)

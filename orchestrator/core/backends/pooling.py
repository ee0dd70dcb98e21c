"""A vLLM pooling engine in this process: the reward model served beside the policy engine.

A reward model ``ttc train-reward-model`` wrote is a ``*ForSequenceClassification`` checkpoint
with a two-way head (``[bad, good]``). vLLM runs it with the pooling runner and the ``STEP``
token pooler at the step tag's id, so one ``token_classify`` request returns the head's softmax
at every tag in the text: the same rows a ``vllm serve --runner pooling`` server answers on
``POST /pooling``. Built once by the runtime (``TTC_REWARD__MODEL``) and closed with it.

    pooler = await InProcessPooler.start(Path("runs/orm-q05"), step_tag_id=17, dtype=None)
    rows = await pooler.tag_rows("<|im_start|>user\\n2+3?<|im_end|>\\n...5<empty_output><|im_end|>\\n")
    await pooler.aclose()
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import anyio

from orchestrator.core.backends.inprocess import engine_dtype, shut_down_engine, use_every_cpu_core
from orchestrator.core.errors import BackendError, BackendUnavailableError

log = logging.getLogger(__name__)
MAX_MODEL_LEN = 2048  # with STEP pooling chunked prefill is off: one batch holds a whole prompt
# Pooling keeps no KV between requests; without an explicit size vLLM's CPU build reserves most of RAM.
KV_CACHE_BYTES = 1 << 30


class InProcessPooler:
    """vLLM ``AsyncLLM`` with the pooling runner; ``tag_rows`` is one ``token_classify`` request."""

    def __init__(self, engine: Any, model_dir: Path) -> None:
        self._engine = engine
        self.model_dir = model_dir
        self._ids = itertools.count()

    @classmethod
    async def start(cls, model_dir: Path, step_tag_id: int, dtype: str | None = None) -> InProcessPooler:
        """Build the engine in a worker thread (tens of seconds; health endpoints keep answering)."""
        engine = await anyio.to_thread.run_sync(_construct, model_dir, step_tag_id, engine_dtype(dtype))
        return cls(engine, model_dir)

    async def tag_rows(self, text: str) -> list[list[float]]:
        """``[p_bad, p_good]`` at each step tag of ``text``, in order."""
        from vllm import PoolingParams

        final = None
        request_id = f"reward-{next(self._ids)}"
        try:
            async for output in self._engine.encode(text, PoolingParams(task="token_classify"), request_id=request_id):
                final = output
        except Exception as error:  # the engine's own failures, named as the backend's
            raise BackendError(
                f"the reward model in {self.model_dir} failed: {type(error).__name__}: {error}"
            ) from None
        if final is None:
            raise BackendError(f"the reward model in {self.model_dir} returned nothing for {request_id}")
        data = final.outputs.data
        return [[float(value) for value in row] for row in data.reshape(-1, data.shape[-1]).tolist()]

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            if self._engine is not None:
                engine, self._engine = self._engine, None
                await shut_down_engine(engine)


def _construct(model_dir: Path, step_tag_id: int, dtype: str) -> Any:
    use_every_cpu_core()
    from vllm import AsyncEngineArgs
    from vllm.config import PoolerConfig
    from vllm.v1.engine.async_llm import AsyncLLM

    args = AsyncEngineArgs(
        model=str(model_dir),
        runner="pooling",
        dtype=dtype,
        max_model_len=MAX_MODEL_LEN,
        enforce_eager=True,
        kv_cache_memory_bytes=KV_CACHE_BYTES,
        pooler_config=PoolerConfig(tok_pooling_type="STEP", step_tag_id=step_tag_id),
    )
    try:
        return AsyncLLM.from_engine_args(args)
    except Exception as error:  # vLLM raises many kinds at start-up; name the setting
        raise BackendUnavailableError(
            f"the reward model engine failed to start for {model_dir} ({type(error).__name__}: {error}); "
            "check TTC_REWARD__MODEL"
        ) from error

"""``prm``: a process reward model served by a vLLM pooling server.

The PRM is a token classifier: vLLM runs it with ``--runner pooling`` and a ``STEP``
pooler, and ``POST /pooling {"model", "input", "task": "token_classify"}`` returns,
for every occurrence of the step tag token in the input, one ``[p_bad, p_good]`` pair::

    {"object": "list", "model": "...", "usage": {...},
     "data": [{"index": 0, "object": "pooling", "data": [[0.02, 0.98], [0.61, 0.39]]}]}

The step score is ``p_good`` (index 1), as in Qwen2.5-Math-PRM's ``make_step_rewards``.
Serving a PRM (Qwen2.5-Math-PRM-7B marks steps with ``<extra_0>``)::

    vllm serve Qwen/Qwen2.5-Math-PRM-7B --runner pooling
    TTC_PRM__URL=http://host:8000 TTC_PRM__STEP_TAG='<extra_0>'

Any token-classification model works with ``--convert classify`` and
``--pooler-config '{"task":"token_classify","tok_pooling_type":"STEP","step_tag_id":ID}'``,
as long as ``TTC_PRM__STEP_TAG`` is the text of token ``ID`` (one token, so one tag, one score).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Self

import anyio
import httpx

from orchestrator.core.backends.base import first_service_error
from orchestrator.core.backends.vllm_http import choose_model, error_message, served_models
from orchestrator.core.errors import BackendError, BackendUnavailableError, ConfigurationError
from orchestrator.core.settings import PRM_SYSTEM_PROMPT, Settings
from orchestrator.core.verification import PolicyModel, ScoreRequest
from verifiers.base import BaseVerifier, SharedModels
from verifiers.reward import TagScorer

DEFAULT_STEP_TAG = "<extra_0>"
STEP_JOIN = "\n\n"  # how an outcome model sees steps: the text they were split from
DEFAULT_SYSTEM_PROMPT = PRM_SYSTEM_PROMPT  # Qwen2.5-Math-PRM's: it scores best when it sees it
DEFAULT_TIMEOUT_S = 120.0
# Pairs within this distance of summing to 1 (bf16 rounding) are taken as probabilities.
_PROBABILITY_TOLERANCE = 1e-2


def format_prm_input(
    question: str,
    steps: Sequence[str],
    step_tag: str = DEFAULT_STEP_TAG,
    system: str | None = DEFAULT_SYSTEM_PROMPT,
) -> str:
    """The PRM's input text: Qwen2.5-Math-PRM's chat layout with one step tag after each step.

    This is the string ``apply_chat_template`` makes from the system prompt (left out when
    ``None``), the question as the user turn and the steps as the assistant turn::

        <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{question}<|im_end|>\\n
        <|im_start|>assistant\\n{step 1}<extra_0>{step 2}<extra_0><|im_end|>\\n

    The server scores every occurrence of the tag, so the tag must appear exactly once per
    step: steps are stripped of surrounding whitespace and every other occurrence of the
    tag (in the steps, the question, the system prompt and the layout itself) becomes a
    space. With ``<extra_0>`` the layout is therefore untouched; with ``"\\n"`` (the test
    model's tag) the layout's line breaks become spaces. Example::

        format_prm_input("1+1?", ["1+1=2", "So 2."], "\\n", system=None)
        == "<|im_start|>user 1+1?<|im_end|> <|im_start|>assistant 1+1=2\\nSo 2.\\n<|im_end|> "
    """
    if not step_tag:
        raise ConfigurationError("the PRM step tag is empty; set TTC_PRM__STEP_TAG (e.g. '<extra_0>')")

    def clean(text: str) -> str:
        return text.replace(step_tag, " ")

    turns = [("system", system)] if system is not None else []
    turns.append(("user", question))
    header = "".join(clean(f"<|im_start|>{role}\n{content}<|im_end|>\n") for role, content in turns)
    answer = "".join(clean(step).strip() + step_tag for step in steps)
    return header + clean("<|im_start|>assistant\n") + answer + clean("<|im_end|>\n")


def step_probabilities(rows: Sequence[Sequence[float]]) -> list[float]:
    """P(step good) for each ``[p_bad, p_good]`` row a pooling server returned.

    vLLM applies softmax by default, but a server (or request) with the activation turned
    off returns raw logits; those are recognised because some row is not a probability
    distribution, and softmax is applied to every row. Example::

        step_probabilities([[0.1, 0.9]]) == [0.9]; step_probabilities([[0.0, 0.0]]) == [0.5]
    """
    for row in rows:
        if len(row) < 2:
            raise BackendError(f"the PRM returned a step score row {list(row)!r}; expected a [p_bad, p_good] pair")
    are_probabilities = all(
        all(0.0 <= value <= 1.0 for value in row) and abs(sum(row) - 1.0) <= _PROBABILITY_TOLERANCE for row in rows
    )
    if are_probabilities:
        return [min(max(float(row[1]), 0.0), 1.0) for row in rows]
    return [_softmax(row)[1] for row in rows]


def _softmax(logits: Sequence[float]) -> list[float]:
    top = max(logits)  # subtracting the max keeps exp() finite for huge logits (an untrained head gives 1e19)
    exps = [math.exp(value - top) for value in logits]
    total = sum(exps)
    return [value / total for value in exps]


class ProcessRewardModel(BaseVerifier):
    """A PRM on a vLLM pooling server: one ``POST /pooling`` per candidate, all concurrent.

    Example::

        prm = ProcessRewardModel("http://127.0.0.1:8000", step_tag="<extra_0>")
        [[s1, s2]] = await prm.score([ScoreRequest("1+1?", ("1+1=2", "The answer is 2."))], session)
        await prm.aclose()

    The served model name is asked from ``GET /v1/models`` on first use when not given.
    A client passed in is borrowed (the caller closes it); otherwise one is created on
    first use and closed by ``aclose``.
    """

    name = "prm"
    summary = "a process reward model's P(step good) per step (TTC_REWARD__MODEL or TTC_PRM__URL)"
    spends_budget = True  # a PRM server is a model: its calls are not free

    def __init__(
        self,
        base_url: str = "",
        model: str = "",
        *,
        step_tag: str = DEFAULT_STEP_TAG,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        scorer: TagScorer | None = None,
    ) -> None:
        if not base_url and scorer is None:
            raise ConfigurationError(
                f"the {self.name} verifier needs a reward model: TTC_REWARD__MODEL (one `ttc train-reward-model` "
                "wrote, served in process) or TTC_PRM__URL (the base URL of a vLLM pooling server, e.g. "
                "vllm serve Qwen/Qwen2.5-Math-PRM-7B --runner pooling)"
            )
        if not step_tag:
            raise ConfigurationError("the PRM step tag is empty; set TTC_PRM__STEP_TAG (e.g. '<extra_0>')")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.step_tag = step_tag
        self.system_prompt = system_prompt
        self.scorer = scorer  # borrowed: the runtime built it and closes it
        self._client = client
        self._owns_client = client is None
        self._timeout = httpx.Timeout(timeout_s, connect=5.0)
        # Concurrent first calls would each ask /v1/models; one asks, the others wait for its answer.
        self._discovery_lock = anyio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, shared: SharedModels) -> Self:
        """The reward model the runtime serves in process (``TTC_REWARD__MODEL``), else the pooling
        server named by ``TTC_PRM__URL``, ``TTC_PRM__MODEL`` and ``TTC_PRM__STEP_TAG``."""
        if (reward := shared.reward) is not None:  # ttc's own reward models read ChatML without a system prompt
            return cls(scorer=reward.scorer, step_tag=reward.step_tag, system_prompt=None)
        options = settings.prm
        return cls(
            options.url,
            options.model,
            step_tag=options.step_tag,
            system_prompt=options.system_prompt or None,
            timeout_s=options.timeout_s,
        )

    async def score(self, batch: Sequence[ScoreRequest], session: PolicyModel) -> list[list[float]]:
        """Per request, P(step good) from the PRM for each of its steps, in batch order."""
        model = "" if self.scorer is not None else await self._served_model()
        results: list[list[float]] = [[] for _ in batch]

        async def run(index: int) -> None:
            results[index] = await self._score_one(batch[index], model)

        try:
            async with anyio.create_task_group() as group:
                for index, request in enumerate(batch):
                    if request.steps:  # nothing to score: skip the round trip
                        group.start_soon(run, index)
        except BaseExceptionGroup as group_error:
            raise first_service_error(group_error) from None
        return results  # the session charges the verifier call, as for every verifier

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_client and self._client is not None:
            with anyio.CancelScope(shield=True):
                await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> ProcessRewardModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- HTTP ----------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # created on first use, inside the event loop that will use it
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    async def _served_model(self) -> str:
        async with self._discovery_lock:
            if not self.model:
                models = await served_models(self._http(), self.base_url, setting="TTC_PRM__URL")
                self.model = str(choose_model(models, "", self.base_url, setting="TTC_PRM__MODEL")["id"])
        return self.model

    async def _score_one(self, request: ScoreRequest, model: str) -> list[float]:
        text = format_prm_input(request.question, request.steps, self.step_tag, self.system_prompt)
        if self.scorer is not None:
            rows = await self.scorer.tag_rows(text)
        else:
            body = {"model": model, "input": text, "task": "token_classify"}
            rows = _pooling_rows(await self._request("POST", "/pooling", body), self.base_url)
        if len(rows) != len(request.steps):
            raise BackendError(
                f"the PRM at {self.base_url or 'TTC_REWARD__MODEL'} returned {len(rows)} step scores "
                f"for {len(request.steps)} steps; "
                f"TTC_PRM__STEP_TAG={self.step_tag!r} must be the single token the server's pooler treats as "
                "the step tag (step_tag_id in --pooler-config)"
            )
        return step_probabilities(rows)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        url = f"{self.base_url}{path}"
        try:
            response = await self._http().request(method, url, json=body)
        except httpx.TransportError as error:
            raise BackendUnavailableError(
                f"cannot reach the PRM server at {self.base_url} ({error!r}); check TTC_PRM__URL"
            ) from None
        if response.status_code != 200:
            hint = "; check TTC_PRM__MODEL" if response.status_code == 404 else ""
            raise BackendError(
                f"the PRM server at {self.base_url} answered {method} {path} with HTTP {response.status_code}: "
                f"{error_message(response)}{hint}"
            )
        return response


def _pooling_rows(response: httpx.Response, base_url: str) -> list[list[float]]:
    """The per-tag rows of a one-input ``/pooling`` answer (``data[0].data``)."""
    try:
        rows = response.json()["data"][0]["data"]
        return [[float(value) for value in row] for row in rows]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
        raise BackendError(
            f"the PRM server at {base_url} sent an unexpected /pooling answer: {response.text[:300]!r}; "
            "is it a token_classify pooling model (--runner pooling)?"
        ) from None


class OutcomeRewardModel(ProcessRewardModel):
    """An outcome reward model: the solution scored as one step (one tag at its end), the score
    given to every step. Served like the PRM: in process (``TTC_REWARD__MODEL``) or a pooling server.

    Example::

        orm = OutcomeRewardModel(scorer=pooler, step_tag="<empty_output>", system_prompt=None)
        [[p, p]] = await orm.score([ScoreRequest("1+1?", ("1+1=2", "The answer is 2."))], session)
    """

    name = "orm"
    summary = "the reward model scoring the whole solution at once, the same at every step"

    async def score(self, batch: Sequence[ScoreRequest], session: PolicyModel) -> list[list[float]]:
        whole = [
            replace(request, steps=(STEP_JOIN.join(step.strip() for step in request.steps),) if request.steps else ())
            for request in batch
        ]
        scores = await super().score(whole, session)
        return [row * len(request.steps) if request.steps else [] for row, request in zip(scores, batch, strict=True)]

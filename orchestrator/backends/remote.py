"""Remote vLLM OpenAI-compatible servers: one or a fleet of replicas over HTTP.

Prompts arrive already tokenised by the shared renderer and go to ``/v1/completions``
as token ids, so the remote engine sees exactly what the embedded one would. Every
request of one search tree goes to the same replica (rendezvous hash of the tree id),
so its branches reuse that replica's prefix cache; when a replica is removed only its
trees move. Cached prompt tokens come from ``usage.prompt_tokens_details`` — start
the servers with ``--enable-prompt-tokens-details``, or they count as uncached.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import anyio
import httpx

from orchestrator.backends.base import (
    BackendCounters,
    Completion,
    GenerationBackend,
    GenerationResult,
    ModelInfo,
    SamplingSettings,
    TokenLogprob,
)
from orchestrator.costmodel import load_model_shape
from orchestrator.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    InvalidRequestError,
    RequestAbortedError,
)
from orchestrator.rendering import ChatRenderer

log = logging.getLogger(__name__)


def pick_replica(replicas: list[str], tree_id: str) -> str:
    """The replica a tree is pinned to: highest-random-weight (rendezvous) hashing.

    Example: ``pick_replica(["http://a:8000", "http://b:8000"], "tree-42")``.
    """
    return max(replicas, key=lambda url: hashlib.sha256(f"{url}|{tree_id}".encode()).digest())


class RemoteBackend(GenerationBackend):
    """vLLM servers reached over HTTP with httpx."""

    def __init__(
        self,
        base_urls: list[str],
        served_model: str,
        renderer: ChatRenderer,
        model: ModelInfo,
        client: httpx.AsyncClient,
    ) -> None:
        super().__init__(renderer, model)
        self.base_urls = base_urls
        self.served_model = served_model
        self._client = client
        self._in_flight: dict[str, anyio.CancelScope] = {}

    @classmethod
    async def connect(
        cls,
        base_urls: list[str],
        *,
        tokenizer: str,
        served_model: str = "",
        timeout_s: float = 300.0,
        api_key: str = "",
    ) -> RemoteBackend:
        """Check every replica answers, learn the served model and its context length."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
        client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0), headers=headers, limits=limits)
        try:
            listings = [await _list_models(client, url) for url in base_urls]
            served = served_model or listings[0][0]["id"]
            entry = next((m for m in listings[0] if m["id"] == served), None)
            if entry is None:
                raise ConfigurationError(
                    f"{base_urls[0]} does not serve {served!r} (it serves {[m['id'] for m in listings[0]]}); "
                    "fix TTC_REMOTE_MODEL_NAME"
                )
            renderer = ChatRenderer.from_pretrained(tokenizer or served)
            shape = load_model_shape(tokenizer or served, setting="TTC_TOKENIZER")
            info = ModelInfo(served, int(entry.get("max_model_len") or 2048), shape)
        except BaseException:
            await client.aclose()
            raise
        return cls(base_urls, served, renderer, info, client)

    async def _generate_one(
        self, token_ids: list[int], sampling: SamplingSettings, request_id: str, tree_id: str | None
    ) -> GenerationResult:
        replica = pick_replica(self.base_urls, tree_id or request_id)
        body: dict[str, Any] = {
            "model": self.served_model,
            "prompt": token_ids,
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "stop": list(sampling.stop),
            "include_stop_str_in_output": sampling.include_stop_str_in_output,
            "return_token_ids": True,
            "request_id": request_id,
        }
        if sampling.logprobs is not None:
            body["logprobs"] = sampling.logprobs
        with anyio.CancelScope() as scope:
            self._in_flight[request_id] = scope
            try:
                response = await self._client.post(f"{replica}/v1/completions", json=body)
            except httpx.HTTPError as error:
                raise BackendUnavailableError(f"vLLM server {replica} failed: {error!r}") from None
            finally:
                self._in_flight.pop(request_id, None)
        if scope.cancelled_caught:  # aborted: closing the connection made the server abort it
            raise RequestAbortedError(f"request {request_id} was aborted")
        return _parse_completion(request_id, replica, response, len(token_ids))

    async def abort(self, request_id: str) -> None:
        scope = self._in_flight.get(request_id)
        if scope is not None:
            scope.cancel()

    async def health(self) -> None:
        for url in self.base_urls:
            try:
                response = await self._client.get(f"{url}/health", timeout=5.0)
            except httpx.HTTPError as error:
                raise BackendUnavailableError(f"vLLM server {url} is unreachable ({error!r})") from None
            if response.status_code != 200:
                raise BackendUnavailableError(f"vLLM server {url} is unhealthy (HTTP {response.status_code})")

    async def counters(self) -> BackendCounters:
        totals = BackendCounters()
        for url in self.base_urls:
            response = await self._client.get(f"{url}/metrics", timeout=5.0)
            replica = parse_prometheus_counters(response.text)
            totals = BackendCounters(
                prefix_cache_queries=totals.prefix_cache_queries + replica.prefix_cache_queries,
                prefix_cache_hits=totals.prefix_cache_hits + replica.prefix_cache_hits,
                kv_cache_usage=max(totals.kv_cache_usage, replica.kv_cache_usage),
                requests_running=totals.requests_running + replica.requests_running,
                requests_waiting=totals.requests_waiting + replica.requests_waiting,
            )
        return totals

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._client.aclose()


async def _list_models(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    try:
        response = await client.get(f"{url}/v1/models", timeout=10.0)
        response.raise_for_status()
        return response.json()["data"]
    except (httpx.HTTPError, KeyError, json.JSONDecodeError) as error:
        raise BackendUnavailableError(
            f"cannot reach the vLLM server at {url} ({error!r}); check TTC_REMOTE_URLS"
        ) from None


def _parse_completion(request_id: str, replica: str, response: httpx.Response, prompt_tokens: int) -> GenerationResult:
    if response.status_code == 400:
        raise InvalidRequestError(f"vLLM rejected the request: {error_message(response)}")
    if response.status_code != 200:
        raise BackendError(f"vLLM server {replica} answered HTTP {response.status_code}: {error_message(response)}")
    payload = response.json()
    choices = sorted(payload["choices"], key=lambda choice: choice["index"])
    usage = payload.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return GenerationResult(
        request_id=request_id,
        completions=tuple(_to_completion(choice) for choice in choices),
        prompt_tokens=int(usage.get("prompt_tokens", prompt_tokens)),
        cached_prompt_tokens=int(details.get("cached_tokens") or 0),
    )


def _to_completion(choice: dict[str, Any]) -> Completion:
    logprobs = choice.get("logprobs")
    parsed = None
    if logprobs:
        parsed = tuple(
            TokenLogprob(token=token, logprob=float(logprob), top=dict(top or {}))
            for token, logprob, top in zip(
                logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"], strict=False
            )
        )
    return Completion(
        text=choice["text"],
        token_ids=tuple(choice.get("token_ids") or ()),
        finish_reason=choice.get("finish_reason") or "abort",
        logprobs=parsed,
    )


def error_message(response: httpx.Response) -> str:
    """The message of a vLLM server's error answer (its JSON envelope, else the start of the text)."""
    try:
        body = response.json()
        return str(body.get("error", {}).get("message") or body.get("message") or body)
    except (json.JSONDecodeError, AttributeError):
        return response.text[:300]


def parse_prometheus_counters(text: str) -> BackendCounters:
    """Read vLLM's counters from a ``/metrics`` page."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return BackendCounters(
        prefix_cache_queries=int(values.get("vllm:prefix_cache_queries_total", 0)),
        prefix_cache_hits=int(values.get("vllm:prefix_cache_hits_total", 0)),
        kv_cache_usage=float(values.get("vllm:kv_cache_usage_perc", 0.0)),
        requests_running=int(values.get("vllm:num_requests_running", 0)),
        requests_waiting=int(values.get("vllm:num_requests_waiting", 0)),
    )

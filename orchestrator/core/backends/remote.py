"""Remote vLLM OpenAI-compatible servers: one or a fleet of replicas over HTTP.

Prompts arrive already tokenised by the shared renderer and go to ``/v1/completions``
as token ids, so the remote engine sees exactly what the embedded one would. Every
request of one search tree goes to the same replica (rendezvous hash of the tree id),
so its branches reuse that replica's prefix cache; when a replica is removed only its
trees move (``TTC_REMOTE__ROUTING=random`` draws a replica per request instead, to measure
what that buys). A replica that cannot be reached, or dies while running a request, passes
the request to the next replica in the tree's order; a request sent again is charged again
and counted in ``Usage.replica_resends``. Cached prompt tokens come from
``usage.prompt_tokens_details`` — start the servers with ``--enable-prompt-tokens-details``,
or they count as uncached.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import anyio
import httpx

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
from orchestrator.core.backends.vllm_http import choose_model, error_message, replica_order, served_models
from orchestrator.core.costmodel import load_model_shape
from orchestrator.core.errors import BackendError, BackendUnavailableError, InvalidRequestError, RequestAbortedError
from orchestrator.core.model_catalog import local_reference
from orchestrator.core.rendering import ChatRenderer
from orchestrator.core.settings import RemoteOptions, Settings

log = logging.getLogger(__name__)


class RemoteBackend(GenerationBackend):
    """vLLM servers reached over HTTP with httpx."""

    def __init__(
        self,
        base_urls: list[str],
        served_model: str,
        renderer: ChatRenderer,
        model: ModelInfo,
        client: httpx.AsyncClient,
        routing: str = "affinity",
    ) -> None:
        super().__init__(renderer, model)
        self.base_urls = base_urls
        self.served_model = served_model
        self.routing = routing
        self._client = client
        self._in_flight: dict[str, anyio.CancelScope] = {}

    @classmethod
    async def open(cls, settings: Settings) -> RemoteBackend:
        """Connect to the servers ``settings.remote`` names."""
        return await cls.connect(settings.remote, tokenizer=settings.tokenizer, cache_dir=settings.model_cache_dir)

    @classmethod
    async def connect(
        cls, options: RemoteOptions, *, tokenizer: str = "", cache_dir: Path | None = None
    ) -> RemoteBackend:
        """Check every replica answers, learn the served model and its context length.

        The tokenizer is ``tokenizer`` if given, else the served model's: its pulled catalogue
        directory in ``cache_dir`` when there is one (no hub needed), else its name on the hub.
        """
        headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
        timeout = httpx.Timeout(options.timeout_s, connect=5.0)
        client = httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits)
        try:
            listings = [await served_models(client, url, setting="TTC_REMOTE__URLS") for url in options.urls]
            entry = choose_model(listings[0], options.model_name, options.urls[0], setting="TTC_REMOTE__MODEL_NAME")
            served = entry["id"]
            tokenizer = tokenizer or (local_reference(served, cache_dir) if cache_dir else served)
            renderer = ChatRenderer.from_pretrained(tokenizer)
            shape = load_model_shape(tokenizer, setting="TTC_TOKENIZER")
            info = ModelInfo(served, int(entry.get("max_model_len") or 2048), shape)
        except BaseException:
            await client.aclose()
            raise
        return cls(options.urls, served, renderer, info, client, options.routing)

    def _replicas_for(self, tree_id: str) -> list[str]:
        """Where a request goes first, then where it moves if that replica fails it."""
        if self.routing == "random":
            return random.sample(self.base_urls, len(self.base_urls))
        return replica_order(self.base_urls, tree_id)

    async def _generate_one(
        self, token_ids: list[int], sampling: SamplingSettings, request_id: str, tree_id: str | None
    ) -> GenerationResult:
        body = self._body(token_ids, sampling, request_id)
        with anyio.CancelScope() as scope:
            self._in_flight[request_id] = scope
            try:
                replica, response, resends = await self._post_to_live_replica(tree_id or request_id, body)
            finally:
                self._in_flight.pop(request_id, None)
        if scope.cancelled_caught:  # aborted: closing the connection made the server abort it
            raise RequestAbortedError(f"request {request_id} was aborted")
        return _parse_completion(request_id, replica, response, len(token_ids), resends)

    async def _generate_until(
        self, token_ids: list[int], sampling: SamplingSettings, request_id: str, tree_id: str | None, stop: StopCheck
    ) -> GenerationResult:
        """Stream the completion (server-sent chunks with logprobs); closing the stream when ``stop``
        says so makes vLLM abort the request. An aborted stream reports no usage: its prompt counts
        as uncached. A replica that fails the stream passes it, from the start, to the next."""
        body = {
            **self._body(token_ids, sampling, request_id),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        failures: list[str] = []
        for replica in self._replicas_for(tree_id or request_id):
            try:
                completion, usage = await self._stream_from(replica, body, request_id, len(token_ids), stop)
            except httpx.TimeoutException as error:
                raise BackendUnavailableError(f"vLLM server {replica} timed out: {error!r}") from None
            except httpx.TransportError as error:
                failures.append(f"{replica} ({error!r})")
                log.warning("vLLM server %s failed a stream (%r); trying the next replica", replica, error)
                continue
            except httpx.HTTPError as error:
                raise BackendUnavailableError(f"vLLM server {replica} failed: {error!r}") from None
            details = usage.get("prompt_tokens_details") or {}
            return GenerationResult(
                request_id,
                (completion,),
                int(usage.get("prompt_tokens", len(token_ids))),
                int(details.get("cached_tokens") or 0),
                resends=len(failures),
            )
        raise BackendUnavailableError(f"no vLLM server could finish the request: {'; '.join(failures)}")

    async def _stream_from(
        self, replica: str, body: dict[str, Any], request_id: str, prompt_tokens: int, stop: StopCheck
    ) -> tuple[Completion, dict[str, Any]]:
        """One replica's stream of a completion, read until it ends or ``stop`` says so."""
        text, ids, logprobs, finish, usage = "", [], [], None, {}
        async with self._client.stream("POST", f"{replica}/v1/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                _parse_completion(request_id, replica, response, prompt_tokens)  # raises its error
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    part = _to_completion(choice)
                    text, ids = text + part.text, ids + list(part.token_ids)
                    logprobs += part.logprobs or ()
                    finish = choice.get("finish_reason") or finish
                if finish is None and logprobs and stop(logprobs):
                    finish = "abort"
                    break  # leaving the block closes the connection: the server aborts the request
        return Completion(text, tuple(ids), finish or "abort", tuple(logprobs)), usage

    def _body(self, token_ids: list[int], sampling: SamplingSettings, request_id: str) -> dict[str, Any]:
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
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        return body

    async def _post_to_live_replica(self, tree_id: str, body: dict[str, Any]) -> tuple[str, httpx.Response, int]:
        """Send to the tree's replica. One that cannot be reached (the request never left) or that
        dies while running it (the connection drops) passes the request to the next in the tree's
        order. Returns the replica that answered, its answer and how often the request was resent."""
        failures: list[str] = []
        resends = 0
        for replica in self._replicas_for(tree_id):
            try:
                return replica, await self._client.post(f"{replica}/v1/completions", json=body), resends
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                failures.append(f"{replica} ({error!r})")
                log.warning("vLLM server %s is unreachable; trying the next replica", replica)
            except httpx.TimeoutException as error:
                raise BackendUnavailableError(f"vLLM server {replica} timed out: {error!r}") from None
            except httpx.TransportError as error:  # it took the request and the connection dropped
                failures.append(f"{replica} ({error!r})")
                resends += 1
                log.warning("vLLM server %s dropped a request it was running (%r); resending it", replica, error)
            except httpx.HTTPError as error:
                raise BackendUnavailableError(f"vLLM server {replica} failed: {error!r}") from None
        raise BackendUnavailableError(f"no vLLM server could be reached: {'; '.join(failures)}")

    async def abort(self, request_id: str) -> None:
        scope = self._in_flight.get(request_id)
        if scope is not None:
            scope.cancel()

    async def health(self) -> None:
        """Ready while one replica answers: requests pass over a dead one (``replica_health`` names it)."""
        states = await self.replica_health()
        if "up" not in states.values():
            raise BackendUnavailableError(
                "no vLLM server is healthy: " + "; ".join(f"{url} {state}" for url, state in states.items())
            )

    async def replica_health(self) -> dict[str, str]:
        states: dict[str, str] = {}
        for url in self.base_urls:
            try:
                response = await self._client.get(f"{url}/health", timeout=5.0)
            except httpx.HTTPError as error:
                states[url] = f"down: unreachable ({error!r})"
                continue
            states[url] = "up" if response.status_code == 200 else f"down: HTTP {response.status_code}"
        return states

    async def counters(self) -> BackendCounters:
        totals = BackendCounters()
        for url in self.base_urls:
            try:
                response = await self._client.get(f"{url}/metrics", timeout=5.0)
            except httpx.HTTPError:
                continue  # a replica that is down has nothing to count; /readyz reports it
            if response.status_code != 200:
                continue
            replica = parse_prometheus_counters(response.text)
            totals = BackendCounters(
                prefix_cache_queries=totals.prefix_cache_queries + replica.prefix_cache_queries,
                prefix_cache_hits=totals.prefix_cache_hits + replica.prefix_cache_hits,
                kv_cache_usage=max(totals.kv_cache_usage, replica.kv_cache_usage),
                requests_running=totals.requests_running + replica.requests_running,
                requests_waiting=totals.requests_waiting + replica.requests_waiting,
                generation_tokens=totals.generation_tokens + replica.generation_tokens,
            )
        return totals

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._client.aclose()


def _parse_completion(
    request_id: str, replica: str, response: httpx.Response, prompt_tokens: int, resends: int = 0
) -> GenerationResult:
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
        resends=resends,
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


def metric_totals(text: str) -> dict[str, float]:
    """Every sample of a ``/metrics`` page, summed over its label sets, by sample name.

    Example: ``metric_totals(page)["vllm:prompt_tokens_total"]``."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def parse_prometheus_counters(text: str) -> BackendCounters:
    """Read vLLM's counters from a ``/metrics`` page."""
    values = metric_totals(text)
    return BackendCounters(
        prefix_cache_queries=int(values.get("vllm:prefix_cache_queries_total", 0)),
        prefix_cache_hits=int(values.get("vllm:prefix_cache_hits_total", 0)),
        kv_cache_usage=float(values.get("vllm:kv_cache_usage_perc", 0.0)),
        requests_running=int(values.get("vllm:num_requests_running", 0)),
        requests_waiting=int(values.get("vllm:num_requests_waiting", 0)),
        generation_tokens=int(values.get("vllm:generation_tokens_total", 0)),
    )

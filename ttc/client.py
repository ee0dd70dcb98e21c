"""``Client`` and ``AsyncClient``: the same methods, the same typed models as the API.

Retries: at most ``max_retries`` (default 2) on connection errors, 408, 429 and 5xx, with
jittered exponential backoff that honours ``Retry-After``. Submitting is made safe to
retry with an idempotency key generated per call.

Without a ``base_url`` or ``api_key`` the client reads ``TTC_BASE_URL`` (default
``http://127.0.0.1:8000``) and ``TTC_API_KEY``, as the ``ttc`` command does.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx

from api.models import ContextInfo, JobList, ReasonResponse, StrategyInfo, VerifierInfo
from orchestrator.core.budget import Budget
from ttc.errors import APIConnectionError, APITimeoutError, TTCAPIError, error_for

RETRYABLE = {408, 429, 500, 502, 503, 504}
CONTEXT_DONE = {"ready", "failed"}
TERMINAL = {"succeeded", "failed", "cancelled"}
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def _budget(budget: Budget | dict | None) -> dict[str, Any] | None:
    if isinstance(budget, dict):
        budget = Budget.model_validate(budget)
    return budget.model_dump(exclude_none=True) if budget else None


class _Base:
    def __init__(self, base_url: str | None, api_key: str | None, max_retries: int) -> None:
        self.base_url = (base_url or os.environ.get("TTC_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        api_key = api_key or os.environ.get("TTC_API_KEY")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_retries = max_retries

    @staticmethod
    def _page(limit: int, before: float | None) -> dict[str, Any]:
        return {"limit": limit} | ({"before": before} if before is not None else {})

    @staticmethod
    def _reason_body(
        question: str,
        budget: Budget | dict | None,
        strategy: str,
        params: dict | None,
        wait: bool,
        context_id: str | None = None,
        context_memory: str = "use_if_ready",
    ):
        return {
            "question": question,
            "budget": _budget(budget),
            "strategy": strategy,
            "params": params or {},
            "wait": wait,
            "idempotency_key": f"sdk-{uuid.uuid4().hex}",  # a retried submit returns the same job
            "context_id": context_id,
            "context_memory": context_memory,
        }

    @staticmethod
    def _context_body(text: str, sleep_budget: Budget | dict | None, params: dict | None) -> dict[str, Any]:
        return {
            "text": text,
            "sleep_budget": _budget(sleep_budget),
            "params": params or {},
            "idempotency_key": f"sdk-{uuid.uuid4().hex}",  # a retried create returns the same context
        }

    @staticmethod
    def _append_body(text: str, sleep_budget: Budget | dict | None) -> dict[str, Any]:
        return {
            "append": text,
            "sleep_budget": _budget(sleep_budget),
            "idempotency_key": f"sdk-{uuid.uuid4().hex}",  # a retried append appends once
        }

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        return min(0.5 * 2**attempt, 8.0) * (0.75 + random.random() / 2)

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = response.text
        if response.status_code >= 400:
            raise error_for(response.status_code, body)
        return body


class Client(_Base):
    """Synchronous client. Example::

    with Client("http://localhost:8000") as client:
        print(client.reason("What is 7 + 5?").answer)
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, max_retries)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = self._http.request(method, path, **kwargs)
                if response.status_code not in RETRYABLE or attempt == self.max_retries:
                    return self._check(response)
            except httpx.TimeoutException as error:
                if attempt == self.max_retries:
                    raise APITimeoutError(f"{method} {path} timed out: {error}") from None
            except httpx.TransportError as error:
                if attempt == self.max_retries:
                    raise APIConnectionError(f"cannot reach {self.base_url}: {error}") from None
            time.sleep(self._backoff(attempt, response))
        raise AssertionError("unreachable")

    def reason(
        self,
        question: str,
        *,
        budget=None,
        strategy: str = "direct",
        params: dict | None = None,
        context_id: str | None = None,
        context_memory: str = "use_if_ready",
    ):
        """Answer a question and wait for the result (a ``ReasonResponse``).

        With ``context_id`` the question is asked over that context and its precomputed
        memory (``context_memory="wait"`` waits for a memory still being computed).
        """
        body = self._reason_body(question, budget, strategy, params, True, context_id, context_memory)
        return ReasonResponse.model_validate(self._request("POST", "/v1/reason", json=body))

    def submit(
        self,
        question: str,
        *,
        budget=None,
        strategy: str = "direct",
        params: dict | None = None,
        context_id: str | None = None,
        context_memory: str = "use_if_ready",
    ) -> Job:
        """Queue a question; returns a ``Job`` handle at once."""
        body = self._reason_body(question, budget, strategy, params, False, context_id, context_memory)
        return Job(self, ReasonResponse.model_validate(self._request("POST", "/v1/reason", json=body)).job_id)

    def create_context(self, text: str, *, sleep_budget=None, params: dict | None = None) -> ContextInfo:
        """Store a context and start precomputing its memory (returns at once, status ``queued``)."""
        body = self._context_body(text, sleep_budget, params)
        return ContextInfo.model_validate(self._request("POST", "/v1/contexts", json=body))

    def context(self, context_id: str) -> ContextInfo:
        """A context's status, memory, sleep tokens and questions served."""
        return ContextInfo.model_validate(self._request("GET", f"/v1/contexts/{context_id}"))

    def extend_context(self, context_id: str, text: str, *, sleep_budget=None) -> ContextInfo:
        """Append ``text`` to a context; its memory is recomputed over what changed (returns at once,
        status ``queued``; questions use the old memory until then).

        Example: ``client.extend_context(info.context_id, "On Friday it sells 4 more.")``.
        """
        body = self._append_body(text, sleep_budget)
        return ContextInfo.model_validate(self._request("PATCH", f"/v1/contexts/{context_id}", json=body))

    def delete_context(self, context_id: str) -> None:
        """Remove a context and its memory (a precompute still running is cancelled)."""
        self._request("DELETE", f"/v1/contexts/{context_id}")

    def wait_for_context(self, context_id: str, timeout: float | None = None, poll_s: float = 0.5) -> ContextInfo:
        """Wait until the context's memory is ready (or its precompute failed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (current := self.context(context_id)).status not in CONTEXT_DONE:
            if deadline is not None and time.monotonic() > deadline:
                raise APITimeoutError(f"context {context_id} still {current.status} after {timeout} s")
            time.sleep(poll_s)
        return current

    def job(self, job_id: str) -> Job:
        """A handle on an existing job."""
        return Job(self, job_id)

    def strategies(self) -> list[StrategyInfo]:
        """Every strategy with its params' JSON schema."""
        return [StrategyInfo.model_validate(s) for s in self._request("GET", "/v1/strategies")]

    def verifiers(self) -> list[VerifierInfo]:
        """Every verifier strategies can name, whether the service has it, and its reward model.

        Example: ``[v.reward_model for v in client.verifiers() if v.name == "orm"]``.
        """
        return [VerifierInfo.model_validate(v) for v in self._request("GET", "/v1/verifiers")]

    def jobs(self, limit: int = 20, before: float | None = None) -> JobList:
        """A page of this key's jobs, newest first (``before=page.next_before`` for the next)."""
        return JobList.model_validate(self._request("GET", "/v1/jobs", params=self._page(limit, before)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Job:
    """A submitted job: ``status()``, ``result(timeout)``, ``cancel()``, ``events()``."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client, self.id = client, job_id

    def status(self) -> ReasonResponse:
        return ReasonResponse.model_validate(self.client._request("GET", f"/v1/jobs/{self.id}"))

    def result(self, timeout: float | None = None, poll_s: float = 0.25) -> ReasonResponse:
        """Wait until the job ends; raises ``APITimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (current := self.status()).status not in TERMINAL:
            if deadline is not None and time.monotonic() > deadline:
                raise APITimeoutError(f"job {self.id} still {current.status} after {timeout} s")
            time.sleep(poll_s)
        return current

    def cancel(self) -> ReasonResponse:
        return ReasonResponse.model_validate(self.client._request("DELETE", f"/v1/jobs/{self.id}"))

    def events(self) -> Iterator[dict[str, Any]]:
        """The job's progress events as they happen (Server-Sent Events), ending with the result."""
        with self.client._http.stream("GET", f"/v1/jobs/{self.id}/events") as response:
            if response.status_code >= 400:
                response.read()
                raise error_for(response.status_code, response.json())
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield json.loads(line.removeprefix("data: "))


class AsyncClient(_Base):
    """Asynchronous client with the same methods as ``Client``."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, max_retries)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = await self._http.request(method, path, **kwargs)
                if response.status_code not in RETRYABLE or attempt == self.max_retries:
                    return self._check(response)
            except httpx.TimeoutException as error:
                if attempt == self.max_retries:
                    raise APITimeoutError(f"{method} {path} timed out: {error}") from None
            except httpx.TransportError as error:
                if attempt == self.max_retries:
                    raise APIConnectionError(f"cannot reach {self.base_url}: {error}") from None
            await anyio.sleep(self._backoff(attempt, response))
        raise AssertionError("unreachable")

    async def reason(
        self,
        question: str,
        *,
        budget=None,
        strategy: str = "direct",
        params: dict | None = None,
        context_id: str | None = None,
        context_memory: str = "use_if_ready",
    ):
        body = self._reason_body(question, budget, strategy, params, True, context_id, context_memory)
        return ReasonResponse.model_validate(await self._request("POST", "/v1/reason", json=body))

    async def submit(
        self,
        question: str,
        *,
        budget=None,
        strategy: str = "direct",
        params: dict | None = None,
        context_id: str | None = None,
        context_memory: str = "use_if_ready",
    ) -> AsyncJob:
        body = self._reason_body(question, budget, strategy, params, False, context_id, context_memory)
        answer = await self._request("POST", "/v1/reason", json=body)
        return AsyncJob(self, ReasonResponse.model_validate(answer).job_id)

    async def create_context(self, text: str, *, sleep_budget=None, params: dict | None = None) -> ContextInfo:
        body = self._context_body(text, sleep_budget, params)
        return ContextInfo.model_validate(await self._request("POST", "/v1/contexts", json=body))

    async def context(self, context_id: str) -> ContextInfo:
        return ContextInfo.model_validate(await self._request("GET", f"/v1/contexts/{context_id}"))

    async def extend_context(self, context_id: str, text: str, *, sleep_budget=None) -> ContextInfo:
        body = self._append_body(text, sleep_budget)
        return ContextInfo.model_validate(await self._request("PATCH", f"/v1/contexts/{context_id}", json=body))

    async def delete_context(self, context_id: str) -> None:
        await self._request("DELETE", f"/v1/contexts/{context_id}")

    async def wait_for_context(
        self,
        context_id: str,
        timeout: float | None = None,  # noqa: ASYNC109 (the same signature as Client.wait_for_context)
        poll_s: float = 0.5,
    ) -> ContextInfo:
        try:
            with anyio.fail_after(timeout):
                while (current := await self.context(context_id)).status not in CONTEXT_DONE:  # noqa: ASYNC110
                    await anyio.sleep(poll_s)
        except TimeoutError:
            raise APITimeoutError(f"context {context_id} not ready within {timeout} s") from None
        return current

    def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, job_id)

    async def jobs(self, limit: int = 20, before: float | None = None) -> JobList:
        """A page of this key's jobs, newest first (``before=page.next_before`` for the next)."""
        return JobList.model_validate(await self._request("GET", "/v1/jobs", params=self._page(limit, before)))

    async def strategies(self) -> list[StrategyInfo]:
        return [StrategyInfo.model_validate(s) for s in await self._request("GET", "/v1/strategies")]

    async def verifiers(self) -> list[VerifierInfo]:
        """Every verifier strategies can name, whether the service has it, and its reward model."""
        return [VerifierInfo.model_validate(v) for v in await self._request("GET", "/v1/verifiers")]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncJob:
    """The asynchronous twin of ``Job``."""

    def __init__(self, client: AsyncClient, job_id: str) -> None:
        self.client, self.id = client, job_id

    async def status(self) -> ReasonResponse:
        return ReasonResponse.model_validate(await self.client._request("GET", f"/v1/jobs/{self.id}"))

    async def result(self, timeout: float | None = None, poll_s: float = 0.25) -> ReasonResponse:  # noqa: ASYNC109
        """Wait until the job ends (the same signature as ``Job.result``, hence ``timeout``)."""
        try:
            with anyio.fail_after(timeout):
                while (current := await self.status()).status not in TERMINAL:  # noqa: ASYNC110 (HTTP polling)
                    await anyio.sleep(poll_s)
        except TimeoutError:
            raise APITimeoutError(f"job {self.id} did not finish within {timeout} s") from None
        return current

    async def cancel(self) -> ReasonResponse:
        return ReasonResponse.model_validate(await self.client._request("DELETE", f"/v1/jobs/{self.id}"))

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        async with self.client._http.stream("GET", f"/v1/jobs/{self.id}/events") as response:
            if response.status_code >= 400:
                await response.aread()
                raise error_for(response.status_code, response.json())
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    yield json.loads(line.removeprefix("data: "))


__all__ = ["AsyncClient", "AsyncJob", "Client", "Job", "TTCAPIError"]

"""SDK retry and error behaviour against a scripted HTTP transport (the live API is tested
end to end in tests/integration/test_cli_and_server.py)."""

from __future__ import annotations

import time

import httpx
import pytest

from ttc import AsyncClient, Client
from ttc.errors import APIConnectionError, BadRequestError, InternalServerError, NotFoundError, RateLimitError

JOB = {
    "job_id": "job-1",
    "status": "succeeded",
    "answer": "12",
    "output": "The answer is 12.",
    "best_so_far": False,
    "usage": {},
    "trace": {},
}


def scripted(*responses: httpx.Response | Exception):
    calls: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handle, calls


def test_retries_5xx_and_429_then_succeeds_honouring_retry_after() -> None:
    handle, calls = scripted(
        httpx.Response(503, json={"error": {"code": "backend_unavailable", "message": "starting"}}),
        httpx.Response(429, headers={"Retry-After": "0.2"}, json={"error": {"code": "rate_limited"}}),
        httpx.Response(200, json=JOB),
    )
    client = Client("http://ttc.test", transport=httpx.MockTransport(handle))
    started = time.monotonic()
    assert client.reason("What is 7 + 5?").answer == "12"
    assert len(calls) == 3 and time.monotonic() - started >= 0.2
    keys = {c.read() for c in calls}
    assert len(keys) == 1  # the same body, so the same idempotency key, on every retry


def test_gives_up_after_two_retries() -> None:
    handle, calls = scripted(*[httpx.Response(502, json={"error": {"code": "backend_error"}})] * 3)
    with pytest.raises(InternalServerError) as caught:
        Client("http://ttc.test", transport=httpx.MockTransport(handle)).reason("q")
    assert len(calls) == 3 and caught.value.code == "backend_error"


def test_connection_errors_are_retried_then_reported() -> None:
    handle, calls = scripted(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(APIConnectionError, match="cannot reach"):
        Client("http://ttc.test", transport=httpx.MockTransport(handle)).strategies()
    assert len(calls) == 3


@pytest.mark.parametrize(("status", "error"), [(400, BadRequestError), (422, BadRequestError), (404, NotFoundError)])
def test_client_errors_are_not_retried_and_keep_the_code(status: int, error: type) -> None:
    handle, calls = scripted(httpx.Response(status, json={"error": {"code": "c", "message": "fix the width"}}))
    with pytest.raises(error, match="fix the width") as caught:
        Client("http://ttc.test", transport=httpx.MockTransport(handle)).job("job-1").status()
    assert len(calls) == 1 and caught.value.status == status and caught.value.code == "c"


async def test_async_client_has_the_same_behaviour() -> None:
    handle, calls = scripted(httpx.Response(500, json={}), httpx.Response(200, json=JOB))
    async with AsyncClient("http://ttc.test", transport=httpx.MockTransport(handle)) as client:
        job = await client.submit("q")
        assert job.id == "job-1" and len(calls) == 2
    handle, _ = scripted(httpx.Response(429, json={}), httpx.Response(429, json={}), httpx.Response(429, json={}))
    async with AsyncClient("http://ttc.test", transport=httpx.MockTransport(handle)) as client:
        with pytest.raises(RateLimitError):
            await client.strategies()

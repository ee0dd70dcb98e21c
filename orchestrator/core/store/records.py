"""What every part of the store shares: the Redis client, the key names, and one optimistic
read-modify-write of a JSON record with a typed change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from redis.exceptions import RedisError, WatchError

from orchestrator.core.errors import NotFoundError, StoreUnavailableError
from orchestrator.core.store.connection import RedisConnection
from orchestrator.core.store.keys import Keys

Record = TypeVar("Record", bound=BaseModel)
Change = Callable[[Record], Record | None]
"""A record's new state from its current one; None leaves it as it is."""
AlsoWrite = Callable[[Any, Record], None]
"""More writes for the transaction that stores a changed record: ``also(pipe, changed)``."""

STORE_ERRORS = (RedisError, OSError, StoreUnavailableError)  # what Redis going away raises, wrapped or not
RETENTION_S = 7 * 24 * 3600  # an ended job's record and events are kept this long (TTC_JOB_RETENTION_S)


class RecordStore:
    """The connection, the namespace's keys (``Keys``: every key is built there) and the
    transaction helpers the job, context and API-key stores are written with."""

    def __init__(
        self, connection: RedisConnection, namespace: str = "ttc", *, retention_s: float = RETENTION_S
    ) -> None:
        self.connection = connection
        self.redis = connection.client
        self.keys = Keys(namespace)
        self.retention_s = int(retention_s)

    async def ping(self) -> None:
        """Raise ``StoreUnavailableError`` when Redis does not answer."""
        try:
            await self.redis.ping()
        except (RedisError, OSError) as error:
            raise StoreUnavailableError(f"Redis does not answer ({error})") from None

    async def transform(
        self, key: str, model: type[Record], change: Change[Record], name: str, also: AlsoWrite[Record] | None = None
    ) -> Record | None:
        """Optimistic read-modify-write of one JSON record (WATCH/MULTI): ``change`` returns the new
        state or None to skip; ``also`` adds more writes to the same transaction. ``name`` says what
        the record is in the ``NotFoundError`` for a missing one.

        Example: ``await store.transform(key, ContextRecord, mark_computing, "context ctx-...")``.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise NotFoundError(f"{name} does not exist")
                    changed = change(model.model_validate_json(raw))
                    if changed is None:
                        await pipe.unwatch()
                        return None
                    pipe.multi()
                    pipe.set(key, changed.model_dump_json())
                    if also is not None:
                        also(pipe, changed)
                    await pipe.execute()
                    return changed
                except WatchError:
                    continue  # someone wrote the record meanwhile: read it again

    async def _execute(self, pipe: Any) -> list[Any]:
        try:
            return await pipe.execute()
        except (RedisError, OSError) as error:
            raise StoreUnavailableError(f"Redis write failed ({error})") from None

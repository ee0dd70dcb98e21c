"""State in Redis: connection (embedded or external), key names, and the typed store."""

from orchestrator.store.connection import RedisConnection, open_redis
from orchestrator.store.keys import Keys
from orchestrator.store.store import JobRecord, Store

__all__ = ["JobRecord", "Keys", "RedisConnection", "Store", "open_redis"]

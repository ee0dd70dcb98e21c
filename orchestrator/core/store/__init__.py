"""State in Redis: connection (embedded or external), key names, and the typed store."""

from orchestrator.core.store.connection import RedisConnection, open_redis
from orchestrator.core.store.keys import Keys
from orchestrator.core.store.store import JobRecord, Store

__all__ = ["JobRecord", "Keys", "RedisConnection", "Store", "open_redis"]

"""State in Redis: connection (embedded or external), key names, and the typed store (one module
per record: ``api_keys``, ``jobs``, ``contexts``, over ``records``)."""

from orchestrator.core.store.connection import RedisConnection, open_redis
from orchestrator.core.store.jobs import JobRecord
from orchestrator.core.store.keys import Keys
from orchestrator.core.store.store import Store

__all__ = ["JobRecord", "Keys", "RedisConnection", "Store", "open_redis"]

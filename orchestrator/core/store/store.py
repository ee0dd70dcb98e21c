"""The typed store: what the service keeps in Redis, behind one class.

Records are JSON documents validated by pydantic on the way in and out. Writes that
touch several keys go through one transactional pipeline, so a reader never sees a
job in the time index without its record. The store is written by record:

- ``records``: the connection, the keys and the typed read-modify-write every part uses;
- ``api_keys``: API keys and the tokens each has spent or reserved;
- ``jobs``: jobs, idempotency keys, event streams and the counters over finished jobs;
- ``contexts``: sleep-time contexts beside their precompute jobs.
"""

from __future__ import annotations

from orchestrator.core.store.contexts import ContextStore


class Store(ContextStore):
    """Jobs, contexts, API keys and service state in Redis; every key comes from ``Keys``.

    Example::

        store = Store(await open_redis(None, data_dir), "ttc")
        job = await store.create_job(JobRecord(question="3 + 4?"), enqueue=True)
    """

"""Every Redis key name the service uses is built here, and nowhere else.

Keys live under one namespace (``TTC_REDIS_NAMESPACE``, default ``ttc``) so several
deployments, or a test run, can share one Redis without touching each other.
"""

from __future__ import annotations

import re

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class Keys:
    """Key builder for one namespace."""

    def __init__(self, namespace: str = "ttc") -> None:
        self.namespace = namespace

    def job(self, job_id: str) -> str:
        """JSON record of one job: request, status, result, usage, trace, timestamps."""
        return f"{self.namespace}:job:{_checked(job_id)}"

    def jobs_by_time(self) -> str:
        """Sorted set of job ids scored by creation time (newest last)."""
        return f"{self.namespace}:jobs:by-time"

    def jobs_of(self, tenant: str) -> str:
        """Sorted set of one tenant's job ids (API key id, or ``open`` without keys) by creation time."""
        return f"{self.namespace}:jobs:of:{_checked(tenant)}"

    def idempotency(self, scope: str, tenant: str, key: str) -> str:
        """Maps a tenant's idempotency key to what it created (scope: ``job`` or ``context``).

        Per tenant (API key id, or ``open`` without keys): one tenant's key never names another's job.
        """
        return f"{self.namespace}:idem:{_checked(scope)}:{_checked(tenant)}:{_checked(key)}"

    def job_stream(self) -> str:
        """Stream of job ids waiting for a worker (one consumer group: ``workers``)."""
        return f"{self.namespace}:jobs:stream"

    def job_events(self, job_id: str) -> str:
        """Stream of one job's progress events (candidates, scores, pruning, budget, result)."""
        return f"{self.namespace}:job:{_checked(job_id)}:events"

    def job_cancel(self, job_id: str) -> str:
        """Flag set while a running job should stop (a cheap key for workers to poll)."""
        return f"{self.namespace}:job:{_checked(job_id)}:cancel"

    def api_keys(self) -> str:
        """Hash of sha256(API key) to the key's JSON record; plaintext keys are never stored."""
        return f"{self.namespace}:api-keys"

    def api_key_usage(self) -> str:
        """Hash of API key id to the compute tokens its finished jobs spent."""
        return f"{self.namespace}:api-keys:usage"

    def api_key_reserved(self) -> str:
        """Hash of API key id to the token budgets of its jobs not finished yet (reserved at submit)."""
        return f"{self.namespace}:api-keys:reserved"

    def job_stats(self) -> str:
        """Hash of counters over every finished job (tokens, outcomes, latency buckets), for /metrics."""
        return f"{self.namespace}:stats:jobs"

    def context(self, context_id: str) -> str:
        """JSON record of a sleep-time context: text, status, current memory, sleep usage, queries."""
        return f"{self.namespace}:context:{_checked(context_id)}"

    def context_memories(self, context_id: str) -> str:
        """Hash of memory version to that memory and its cost (every version is kept)."""
        return f"{self.namespace}:context:{_checked(context_id)}:memories"

    def context_jobs_applied(self, context_id: str) -> str:
        """Set of job ids whose effect on the context (a memory, a question) is already counted."""
        return f"{self.namespace}:context:{_checked(context_id)}:applied"

    def sweep_spec(self, sweep: str) -> str:
        """JSON of a budget sweep's definition (dataset, strategies, budgets)."""
        return f"{self.namespace}:sweep:{_checked(sweep)}:spec"

    def sweep_results(self, sweep: str) -> str:
        """Hash of a sweep's results: unit key (item, strategy, params, budget, seed) to JSON."""
        return f"{self.namespace}:sweep:{_checked(sweep)}:results"

    def sweep_probes(self, sweep: str) -> str:
        """Hash of item id to its difficulty-probe features (what ``auto`` sees online)."""
        return f"{self.namespace}:sweep:{_checked(sweep)}:probes"

    def sweep_passes(self, sweep: str) -> str:
        """Hash of (item, sampling params, seed) to one best-of-N sample pass, reused by every budget."""
        return f"{self.namespace}:sweep:{_checked(sweep)}:passes"

    def schema_version(self) -> str:
        """The layout version of everything under this namespace."""
        return f"{self.namespace}:schema-version"


def _checked(identifier: str) -> str:
    if not _ID.match(identifier):
        raise ValueError(f"invalid identifier {identifier!r}: use 1-128 letters, digits, '_', '.', ':' or '-'")
    return identifier

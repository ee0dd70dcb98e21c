"""Counters over finished jobs, kept in one Redis hash so every API replica reports them.

Whichever process finishes a job (the API's embedded worker or a separate ``ttc worker``)
adds that job's figures with HINCRBYFLOAT; ``/metrics`` reads the hash at scrape time.
Field names are ``kind|label|label``; strategy names and limits never contain ``|``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from orchestrator.core.budget import Usage

LATENCY_BUCKETS_S: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, math.inf)


def job_increments(strategy: str, status: str, usage: Usage) -> dict[str, float]:
    """The hash fields one finished job adds to, and by how much."""
    increments = {
        "tokens|prompt": usage.prompt_tokens - usage.cached_prompt_tokens,
        "tokens|cached_prompt": usage.cached_prompt_tokens,
        "tokens|completion": usage.completion_tokens,
        f"jobs|{strategy}|{status}": 1,
        f"latency_sum|{strategy}": usage.wall_time_s,
        f"latency_count|{strategy}": 1,
    }
    for bound in LATENCY_BUCKETS_S:  # cumulative, as Prometheus histograms are
        if usage.wall_time_s <= bound:
            increments[f"latency_bucket|{strategy}|{bound}"] = 1
    if usage.budget_exhausted:
        increments[f"exhausted|{usage.budget_exhausted}"] = 1
    return increments


@dataclass
class JobStats:
    """The hash read back, grouped for the Prometheus exposition."""

    tokens: dict[str, float] = field(default_factory=dict)
    jobs: dict[tuple[str, str], float] = field(default_factory=dict)
    exhausted: dict[str, float] = field(default_factory=dict)
    latency_sum: dict[str, float] = field(default_factory=dict)
    latency_count: dict[str, float] = field(default_factory=dict)
    latency_buckets: dict[str, dict[float, float]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def parse(cls, raw: dict[str, str]) -> JobStats:
        """Group ``kind|labels`` fields; unknown kinds (from a newer version) are skipped."""
        stats = cls()
        for name, value in raw.items():
            kind, *labels = name.split("|")
            number = float(value)
            if kind == "tokens":
                stats.tokens[labels[0]] = number
            elif kind == "jobs":
                stats.jobs[(labels[0], labels[1])] = number
            elif kind == "exhausted":
                stats.exhausted[labels[0]] = number
            elif kind == "latency_sum":
                stats.latency_sum[labels[0]] = number
            elif kind == "latency_count":
                stats.latency_count[labels[0]] = number
            elif kind == "latency_bucket":
                stats.latency_buckets[labels[0]][float(labels[1])] = number
        return stats

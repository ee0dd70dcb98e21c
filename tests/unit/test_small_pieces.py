"""Redis key names, replica pinning, error codes, Prometheus parsing."""

from __future__ import annotations

import pytest

from orchestrator.core.backends.remote import parse_prometheus_counters
from orchestrator.core.backends.vllm_http import pick_replica
from orchestrator.core.errors import BudgetExceededError, PromptTooLongError, http_status_for_code
from orchestrator.core.store.keys import Keys


def test_keys_are_namespaced_and_validated() -> None:
    keys = Keys("prod")
    assert keys.job("job-1") == "prod:job:job-1"
    assert keys.jobs_by_time() == "prod:jobs:by-time"
    with pytest.raises(ValueError, match="invalid identifier"):
        keys.job("bad id with spaces")


def test_trees_are_pinned_to_one_replica_and_spread_over_all() -> None:
    replicas = [f"http://replica-{i}:8000" for i in range(4)]
    assert pick_replica(replicas, "tree-1") == pick_replica(list(reversed(replicas)), "tree-1")
    chosen = {pick_replica(replicas, f"tree-{i}") for i in range(200)}
    assert chosen == set(replicas)
    # removing a replica moves only the trees that were on it
    moved = [i for i in range(200) if pick_replica(replicas, f"tree-{i}") != pick_replica(replicas[:3], f"tree-{i}")]
    assert all(pick_replica(replicas, f"tree-{i}") == replicas[3] for i in moved)


def test_error_codes_map_to_http_statuses() -> None:
    assert http_status_for_code(PromptTooLongError.code) == 400
    assert http_status_for_code(BudgetExceededError.code) == 402
    assert http_status_for_code("no-such-code") == 500
    envelope = PromptTooLongError("x").to_dict()
    assert envelope == {"type": "invalid_request_error", "code": "prompt_too_long", "message": "x"}


def test_prometheus_counters_are_read_from_vllm_metrics() -> None:
    page = "\n".join(
        [
            "# TYPE vllm:prefix_cache_queries counter",
            'vllm:prefix_cache_queries_total{engine="0"} 120.0',
            "# TYPE vllm:prefix_cache_hits counter",
            'vllm:prefix_cache_hits_total{engine="0"} 96.0',
            "# TYPE vllm:kv_cache_usage_perc gauge",
            'vllm:kv_cache_usage_perc{engine="0"} 0.25',
            "# TYPE vllm:num_requests_running gauge",
            'vllm:num_requests_running{engine="0"} 3.0',
            "# TYPE vllm:num_requests_waiting gauge",
            'vllm:num_requests_waiting{engine="0"} 1.0',
        ]
    )
    counters = parse_prometheus_counters(page + "\n")
    assert (counters.prefix_cache_queries, counters.prefix_cache_hits) == (120, 96)
    assert counters.prefix_cache_hit_rate == pytest.approx(0.8)
    assert (counters.kv_cache_usage, counters.requests_running, counters.requests_waiting) == (0.25, 3, 1)

"""A job's progress events as one readable line each: what a chat client shows as reasoning.

Example: a ``route`` event of ``auto`` reads
``auto, wave 2: 4 samples, leader 12 with 3 of 6 votes -> wave: 3 of 6 agree: 2 more``.
"""

from __future__ import annotations

from typing import Any


def describe(event: dict[str, Any]) -> str | None:
    """The event as a line of text (newline-terminated), or None for events nobody reads
    (token deltas, the result)."""
    kind = event.get("type")
    describer = DESCRIBERS.get(kind) if isinstance(kind, str) else None
    if describer is None:
        return None if kind in SILENT else f"{kind}\n"
    return describer(event) + "\n"


def _started(event: dict[str, Any]) -> str:
    return f"{event.get('strategy')}: started"


def _route(event: dict[str, Any]) -> str:
    leader, samples = event.get("leader"), event.get("samples")
    votes = f"leader {leader} with {event.get('leader_votes')} of {samples} votes" if leader else "no answer yet"
    decision = f"{event.get('action')}: {event.get('reason')}"
    return f"auto, wave {event.get('wave')}: {event.get('size')} samples, {votes} -> {decision}"


def _wave(event: dict[str, Any]) -> str:
    tally = event.get("tally") or {}
    leader = max(tally.items(), key=lambda pair: pair[1], default=None)
    votes = f", leader {leader[0]} with {leader[1]} votes" if leader else ""
    stopped = f", {event['stopped']} stopped early" if event.get("stopped") else ""
    return f"best-of-N: {event.get('samples')} samples{votes}{stopped}"


def _depth(event: dict[str, Any]) -> str:
    candidates = event.get("candidates") or []
    scores = [c["score"] for c in candidates if isinstance(c, dict) and isinstance(c.get("score"), int | float)]
    best = f", best score {max(scores):.2f}" if scores else ""
    kv = event.get("kv_footprint_tokens")
    return f"search depth {event.get('depth')}: {len(candidates)} new steps{best}, KV {kv} tokens"


def _spawn(event: dict[str, Any]) -> str:
    return f"thread {event.get('parent')} spawned {len(event.get('children') or [])} threads"


def _join(event: dict[str, Any]) -> str:
    return f"thread {event.get('parent')} joined {len(event.get('results') or [])} results"


def _retry(event: dict[str, Any]) -> str:
    return f"running again: {event.get('message')}"


def _sleep_round(event: dict[str, Any]) -> str:
    stages = event.get("stages") or {}
    passed = ", ".join(f"{count} {stage}" for stage, count in stages.items() if stage != "kept")
    return f"sleep-time round {event.get('round')}: {event.get('kept')} facts kept ({passed})"


DESCRIBERS = {
    "started": _started,
    "route": _route,
    "wave": _wave,
    "depth": _depth,
    "spawn": _spawn,
    "join": _join,
    "retry": _retry,
    "sleep_round": _sleep_round,
}
SILENT = {"delta", "result", "end"}

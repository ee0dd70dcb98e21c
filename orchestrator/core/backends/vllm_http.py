"""Talking to vLLM servers over HTTP: what the remote backend and the PRM client share.

Replica pinning (one search tree, one replica), reading a vLLM error answer, and asking
a server which models it serves. Errors name the setting to fix.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

from orchestrator.core.errors import BackendError, BackendUnavailableError, ConfigurationError


def pick_replica(replicas: list[str], tree_id: str) -> str:
    """The replica a tree is pinned to: highest-random-weight (rendezvous) hashing.

    Removing a replica moves only the trees that were pinned to it.
    Example: ``pick_replica(["http://a:8000", "http://b:8000"], "tree-42")``.
    """
    return replica_order(replicas, tree_id)[0]


def replica_order(replicas: list[str], tree_id: str) -> list[str]:
    """Every replica in the tree's rendezvous order: where it goes, then where it moves if that one is down."""
    return sorted(replicas, key=lambda url: hashlib.sha256(f"{url}|{tree_id}".encode()).digest(), reverse=True)


def error_message(response: httpx.Response) -> str:
    """The message of a vLLM server's error answer (its JSON envelope, else the start of the text)."""
    try:
        body = response.json()
        return str(body.get("error", {}).get("message") or body.get("message") or body)
    except (json.JSONDecodeError, AttributeError):
        return response.text[:300]


async def served_models(client: httpx.AsyncClient, base_url: str, *, setting: str) -> list[dict[str, Any]]:
    """The models a vLLM server serves (``GET /v1/models``), each a dict with at least ``id``.

    ``setting`` names the URL setting a person would fix when the server cannot be asked.
    """
    try:
        response = await client.get(f"{base_url}/v1/models", timeout=10.0)
    except httpx.HTTPError as error:
        raise BackendUnavailableError(
            f"cannot reach the vLLM server at {base_url} ({error!r}); check {setting}"
        ) from None
    if response.status_code != 200:
        raise BackendUnavailableError(
            f"the vLLM server at {base_url} answered GET /v1/models with HTTP {response.status_code}: "
            f"{error_message(response)}; check {setting}"
        )
    try:
        models = response.json()["data"]
        if not models or not all(isinstance(m, dict) and "id" in m for m in models):
            raise ValueError("no model entries")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise BackendError(
            f"the vLLM server at {base_url} lists no model ({response.text[:200]!r}); check {setting}"
        ) from None
    return models


def choose_model(models: list[dict[str, Any]], wanted: str, base_url: str, *, setting: str) -> dict[str, Any]:
    """The entry of ``wanted`` among a server's models, or its first model when none is wanted."""
    if not wanted:
        return models[0]
    entry = next((m for m in models if m["id"] == wanted), None)
    if entry is None:
        served = [m["id"] for m in models]
        raise ConfigurationError(f"{base_url} does not serve {wanted!r} (it serves {served}); fix {setting}")
    return entry

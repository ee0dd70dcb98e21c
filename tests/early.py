"""Servers the selected tests need, started in the background the moment collection ends.

An engine's start is mostly single-threaded Python imports (a `vllm serve` imports vLLM three
times: API server, engine core, worker; about 9 s each on 2 cores). Started at once, that runs on
the second core while the first runs the unit tests, which the suite orders first; the fixture
handing a server out then only waits for it. A server no selected test asks for is never started,
and everything started is stopped when the session ends.

    start_early({"vllm_server"}, log_root)   # from pytest_collection_finish
    server = take("vllm_server", log_root)    # in the fixture: the early one, or one started now
    url = server.ready()
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cli.fleet import PREFIX_CACHING_ARGS
from orchestrator.core.model_catalog import ensure_model
from orchestrator.core.settings import Settings
from tests.reward_server import RewardModel
from tests.servers import start_default_model, start_vllm


class Started(Protocol):
    def stop(self) -> None: ...


def _vllm(name: str) -> Callable[[Path], Started]:
    def start(log_root: Path) -> Started:
        model_dir = ensure_model(Settings().model_cache_dir, os.environ["TTC_MODEL"])
        (log_root / name).mkdir(parents=True, exist_ok=True)
        return start_vllm(model_dir, log_root / name / "server.log", PREFIX_CACHING_ARGS)

    return start


def _reward_model(serve: bool) -> Callable[[Path], Started]:
    def start(log_root: Path) -> Started:
        (log_root / "reward").mkdir(parents=True, exist_ok=True)
        return RewardModel(log_root / "reward", os.environ["TTC_MODEL"], serve=serve)

    return start


STARTERS: dict[str, Callable[[Path], Started]] = {
    "vllm_server": _vllm("vllm-server"),
    "second_vllm_server": _vllm("second-vllm-server"),  # the fleet test's, which it kills
    "default_model_server": start_default_model,
    "reward_server": _reward_model(serve=True),  # trains the reward model, then serves it
    "reward_dir": _reward_model(serve=False),  # only trains it
}
"""Fixture name → what starts its server (given a directory for its files)."""

SHARED = {"reward_server": "reward model", "reward_dir": "reward model"}
"""Fixtures that share one started thing: the first of them a test needs starts it for all (the
reward model's training, and its server when some test needs that; ``ready`` serves it late if not)."""

_started: dict[str, Started] = {}


class FailedStart:
    """A start that raised: the fixture taking it raises the same error (in its test, not at collection)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def stop(self) -> None:
        pass

    def __getattr__(self, name: str):
        raise self.error


def start_early(fixture_names: set[str], log_root: Path) -> None:
    """Start, without waiting, the server of every fixture in ``fixture_names`` that has one."""
    for name, starter in STARTERS.items():
        key = SHARED.get(name, name)
        if name in fixture_names and key not in _started:
            try:
                _started[key] = starter(log_root)
            except Exception as error:  # e.g. a model that cannot be pulled: the tests needing it fail
                _started[key] = FailedStart(error)


def take(name: str, log_root: Path) -> Started:
    """What was started early for fixture ``name`` (or a fixture it shares with), else one started
    now. It stays registered until ``stop_all``."""
    key = SHARED.get(name, name)
    if key not in _started:
        _started[key] = STARTERS[name](log_root)
    return _started[key]


def stop_all() -> None:
    """Stop everything started, when the session ends."""
    while _started:
        _started.popitem()[1].stop()

"""Test-time compute strategies: small async functions over a ``Session``.

Importing this package registers every strategy in ``REGISTRY``.
"""

from strategies import auto as _auto  # noqa: F401
from strategies import beam_search as _beam_search  # noqa: F401
from strategies import best_of_n as _best_of_n  # noqa: F401
from strategies import direct as _direct  # noqa: F401
from strategies import probe as _probe  # noqa: F401
from strategies import rebase as _rebase  # noqa: F401
from strategies import sleep_time as _sleep_time  # noqa: F401
from strategies import spawn_join as _spawn_join  # noqa: F401
from strategies.base import REGISTRY, Strategy, StrategyResult, get_strategy, register

__all__ = ["REGISTRY", "Strategy", "StrategyResult", "get_strategy", "register"]

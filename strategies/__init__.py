"""Test-time compute strategies: small async functions over a ``ReasoningContext``.

Importing this package registers every strategy in ``REGISTRY``.
"""

from strategies import direct as _direct  # noqa: F401  (registers "direct")
from strategies.base import REGISTRY, Strategy, StrategyResult, get_strategy, register

__all__ = ["REGISTRY", "Strategy", "StrategyResult", "get_strategy", "register"]

"""Verifiers and answer checking: one protocol for step scores, plus answer extraction.

Importing this package registers the verifiers in ``verifiers.base.VERIFIERS``.
"""

from verifiers import arith_steps as _arith_steps  # noqa: F401
from verifiers import prm as _prm  # noqa: F401
from verifiers import self_judge as _self_judge  # noqa: F401
from verifiers.base import VERIFIERS, Aggregation, ScoreRequest, Verifier, aggregate, get_verifier

__all__ = ["VERIFIERS", "Aggregation", "ScoreRequest", "Verifier", "aggregate", "get_verifier"]

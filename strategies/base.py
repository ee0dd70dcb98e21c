"""What a strategy is, and the registry that names them.

A strategy is an async function ``run(question, session, params) -> StrategyResult`` with a
pydantic params model; the registry maps its name to both, so the API can publish each
params model's JSON schema and validate requests before any compute is spent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from orchestrator.core.errors import InvalidRequestError, describe_problems
from orchestrator.core.session import Session


class StrategyResult(BaseModel):
    """A strategy's answer, the text it came from, and how it was found."""

    answer: str | None
    output: str
    best_so_far: bool = Field(False, description="the budget ran out before the strategy finished")
    cut_off: bool = Field(
        False, description="the answer's text stopped at a length or budget limit, not where the model ended it"
    )
    trace: dict[str, Any] = Field(default_factory=dict)


P = TypeVar("P", bound=BaseModel)
StrategyFn = Callable[[str, Session, Any], Awaitable[StrategyResult]]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its name, params model and run function."""

    name: str
    params_model: type[BaseModel]
    run: StrategyFn
    description: str

    def params_schema(self) -> dict[str, Any]:
        """The JSON schema of this strategy's params (published by the API)."""
        return self.params_model.model_json_schema()

    def parse_params(self, raw: dict[str, Any] | None) -> BaseModel:
        """Validate raw params; the error says which field to fix."""
        try:
            return self.params_model.model_validate(raw or {})
        except ValidationError as error:
            problems = describe_problems(error.errors(), "params")
            raise InvalidRequestError(f"invalid params for strategy {self.name!r}: {problems}") from None


def parallel_streams(params: BaseModel) -> int:
    """Sequences these params may decode at once: what the operator's ``max_parallel`` ceiling
    bounds. A params model that samples in parallel says how many with ``parallel_streams()``."""
    method = getattr(params, "parallel_streams", None)
    return int(method()) if callable(method) else 1


REGISTRY: dict[str, Strategy] = {}


def register(name: str, params_model: type[P]) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator adding a strategy to the registry under ``name``."""

    def add(run: StrategyFn) -> StrategyFn:
        REGISTRY[name] = Strategy(name, params_model, run, (run.__doc__ or "").strip().splitlines()[0])
        return run

    return add


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``, or an error listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InvalidRequestError(f"unknown strategy {name!r}; choose one of {sorted(REGISTRY)}") from None

"""The policy ``auto`` follows: how samples are drawn, and per budget the allocation rule.

A policy is a versioned JSON file fitted by ``ttc fit-router`` on one model's dev sweep, and it
names that model (``model``, a catalogue name): rules fitted on one model's samples say
nothing about another's. ttc ships one per catalogue model it was fitted for,
``policies/<model>.json``; an operator can fit their own. Its ``sampling`` is how the dev sweep
drew the samples it was fitted on: ``auto`` draws the same way, so the replayed rule and the
online one see the same kind of samples.

The runtime chooses the served policy once (``served_policy``): the file the operator named
(``TTC_ROUTING_POLICY``, used whatever model it names: the operator chose it), else the shipped
policy of the served model, else none (``auto`` then says how to fit one).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.errors import ConfigurationError, InvalidRequestError
from strategies.allocation import Allocation
from strategies.base import REGISTRY, parallel_streams
from strategies.direct import DEFAULT_SYSTEM_PROMPT
from verifiers.registry import VerifierName

SHIPPED_POLICIES = Path(__file__).parent / "policies"
FORMAT = "ttc-policy/3"  # 3: the policy names the model it was fitted on
NOT_ROUTABLE = ("auto", "probe")  # a switch must name a strategy that answers on its own


class Sampling(BaseModel):
    """How every wave's samples are drawn (as the dev sweep's best-of-N pass drew them)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, gt=0.0, le=5.0)
    max_tokens: int = Field(256, ge=16, le=8192)
    logprobs: int = Field(5, ge=0, le=20, description="top-k logprobs: every sample's confidence measures")
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    verifier: VerifierName = Field("arith_steps", description="scores every sample, as the dev pass scored them")
    typical_tokens: int = Field(128, ge=1, description="a sample's usual length: sizes the first wave to the budget")


class BudgetRule(BaseModel):
    """Use ``allocation`` when at least ``min_tokens`` of budget are left."""

    model_config = ConfigDict(extra="forbid")

    min_tokens: int = Field(ge=0)
    allocation: Allocation
    budget: int | None = Field(None, description="the sweep budget this rule was fitted at")


class QuestionClass(BaseModel):
    """Rules for the questions whose rendered prompt has at most ``max_prompt_tokens`` tokens.

    How long a question is says something about how hard it is before any sample is drawn
    (a one-line sum against a paragraph-long word problem), so a policy may route them apart.
    """

    model_config = ConfigDict(extra="forbid")

    max_prompt_tokens: int = Field(ge=1)
    rules: list[BudgetRule] = Field(min_length=1)


class Policy(BaseModel):
    """How ``auto`` samples, and its allocation rules ordered by the budget they need: per question
    class (shortest first) if it has classes, ``rules`` for the questions longer than all of them."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    version: str
    model: str = Field(min_length=1, description="the model it was fitted on (a catalogue name)")
    description: str = ""
    sampling: Sampling = Field(default_factory=Sampling)
    rules: list[BudgetRule] = Field(min_length=1)
    classes: list[QuestionClass] = Field(default_factory=list, description="rules for shorter questions")
    fitted: dict[str, Any] | None = Field(None, description="how a fitted policy was chosen (its dev report)")

    def rule_for(self, tokens_left: int | None, prompt_tokens: int | None = None) -> BudgetRule:
        """The rule of the largest ``min_tokens`` the budget left affords (the smallest if none does),
        among the rules of the question's class (by its prompt's length).

        Example: with rules at 0 and 1000 tokens, 1500 tokens left use the second.
        """
        ordered = sorted(self.rules_for_prompt(prompt_tokens), key=lambda rule: rule.min_tokens)
        affordable = [rule for rule in ordered if tokens_left is None or rule.min_tokens <= tokens_left]
        return (affordable or ordered[:1])[-1]

    def rules_for_prompt(self, prompt_tokens: int | None) -> list[BudgetRule]:
        """The rules of the first class whose ``max_prompt_tokens`` the prompt fits, else ``rules``."""
        if prompt_tokens is not None:
            for question_class in sorted(self.classes, key=lambda c: c.max_prompt_tokens):
                if prompt_tokens <= question_class.max_prompt_tokens:
                    return question_class.rules
        return self.rules

    def every_rule(self) -> list[BudgetRule]:
        return [*self.rules, *(rule for question_class in self.classes for rule in question_class.rules)]

    def widest_wave(self) -> int:
        """The most samples any rule draws at once, or its switch decodes at once."""
        widths = [rule.allocation.widest_wave() for rule in self.every_rule()]
        for rule in self.every_rule():
            if rule.allocation.switch is not None:
                switch = rule.allocation.switch
                widths.append(parallel_streams(REGISTRY[switch.strategy].parse_params(switch.params)))
        return max(widths)

    def check(self, where: str) -> Policy:
        """The format is this one; every switch names a routable strategy with valid params."""
        if self.format != FORMAT:
            raise ConfigurationError(f"routing policy {where} has format {self.format!r}; this ttc reads {FORMAT!r}")
        for rule in self.every_rule():
            switch = rule.allocation.switch
            if switch is None:
                continue
            if switch.strategy in NOT_ROUTABLE or switch.strategy not in REGISTRY:
                raise ConfigurationError(f"routing policy {where} switches to unusable strategy {switch.strategy!r}")
            try:
                REGISTRY[switch.strategy].parse_params(switch.params)
            except InvalidRequestError as error:
                raise ConfigurationError(f"routing policy {where}: switch params: {error.message}") from None
        return self


log = logging.getLogger(__name__)


def shipped_policy_path(model: str) -> Path:
    """Where the shipped policy of catalogue model ``model`` lives (it may not exist)."""
    return SHIPPED_POLICIES / f"{model}.json"


def served_policy(model: str, explicit: Path | None = None) -> Policy | None:
    """The policy ``auto`` follows on ``model``: ``explicit`` if given, else the shipped one, else None.

    Example: ``served_policy("smollm2-135m").model == "smollm2-135m"``.
    """
    if explicit is not None:
        policy = load_policy(explicit)
        if policy.model != model:
            log.warning("routing policy %s was fitted on %s, not the served %s: used as configured", explicit,
                        policy.model, model)  # fmt: skip
        return policy
    path = shipped_policy_path(model)
    if not path.is_file():
        return None
    policy = load_policy(path)
    if policy.model != model:
        raise ConfigurationError(f"the shipped policy {path} names model {policy.model!r}, not {model!r}")
    return policy


def load_policy(path: str | Path) -> Policy:
    """Read and check a policy file; a ``ConfigurationError`` says what is wrong with it."""
    try:
        policy = Policy.model_validate(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read the routing policy {path}: {error}") from None
    return policy.check(str(path))

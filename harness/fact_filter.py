"""The sleep phase's fact filter fitted on dev contexts: how many samples must agree, and where a
judge's bar sits.

Every question a sleep phase answered is a candidate (``strategies.sleep_time.Candidate``: its
most common answer, that answer's votes, whether one of their workings checks and is grounded,
and the judge's score), graded right or wrong against the context's generator. A rule keeps a
candidate when at least ``agree`` of its samples gave the answer, its working checks and is
grounded, and, if the rule has a bar, the judge scored it above the bar.

The fit keeps the rule with the most right facts minus wrong ones on dev contexts: a wrong fact in
memory misleads a question about as much as a right one helps it, so a fact is worth keeping when
it is more likely right than wrong. Ties go to the more precise rule, then to the one without a
judge (it costs nothing), then to the stricter agreement (what dev cannot tell apart, keep out).
The rule is then scored on test contexts, which share no content with the dev ones
(``harness.catalog.in_split``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.sleep_report import context_interval

Candidate = Mapping[str, Any]
"""A ``Candidate``'s fields as stored (``model_dump``), plus ``right``: the generator's grade."""


@dataclass(frozen=True)
class FilterRule:
    """Keep a candidate with ``agree`` votes (of its samples, at most all of them), a checked and
    grounded working and, when ``judge_above`` is set, a judge score above it."""

    agree: int
    judge_above: float | None = None

    def keeps(self, candidate: Candidate) -> bool:
        """Example: ``FilterRule(3).keeps({"votes": 3, "samples": 4, "grounded": True}) is True``."""
        if not candidate["grounded"] or candidate["votes"] < min(self.agree, candidate["samples"]):
            return False
        if self.judge_above is None:
            return True
        score = candidate.get("judge")
        return score is not None and score > self.judge_above

    def params(self) -> dict[str, Any]:
        """The ``SleepParams`` fields that apply this rule (the judge named by the caller)."""
        return {"agree": self.agree} | ({} if self.judge_above is None else {"judge_above": self.judge_above})


def net_right(rule: FilterRule, candidates: Sequence[Candidate]) -> int:
    """Right facts kept minus wrong ones."""
    return sum(1 if candidate["right"] else -1 for candidate in candidates if rule.keeps(candidate))


def precision(rule: FilterRule, candidates: Sequence[Candidate]) -> float:
    kept = [candidate["right"] for candidate in candidates if rule.keeps(candidate)]
    return sum(kept) / len(kept) if kept else 0.0


def rules(candidates: Sequence[Candidate], samples: int) -> list[FilterRule]:
    """Every agreement count up to ``samples``, without a judge and with each bar halfway between
    two judge scores the candidates have."""
    scores = sorted({c["judge"] for c in candidates if c.get("judge") is not None})
    bars = [round((low + high) / 2, 4) for low, high in itertools.pairwise(scores)]
    return [FilterRule(agree, bar) for agree in range(1, samples + 1) for bar in [None, *bars]]


def fit_rule(candidates: Sequence[Candidate], samples: int) -> FilterRule:
    """The rule with the most right-minus-wrong facts on ``candidates`` (see the module docstring).

    Example: with two right candidates of 2 votes and a wrong one of 1, ``FilterRule(2)`` wins.
    """
    return max(
        rules(candidates, samples),
        key=lambda rule: (
            net_right(rule, candidates),
            precision(rule, candidates),
            rule.judge_above is None,
            rule.agree,
        ),
    )


def scored(rule: FilterRule, contexts: Mapping[str, Sequence[Candidate]]) -> dict[str, Any]:
    """What ``rule`` keeps of each context's candidates: facts, right ones, the share right and
    right-minus-wrong per context, each with a context-bootstrap interval."""
    names = sorted(contexts)

    def pooled(chosen: list[str]) -> tuple[int, int]:
        kept = [c["right"] for name in chosen for c in contexts[name] if rule.keeps(c)]
        return len(kept), sum(kept)

    def share(chosen: list[str]) -> float:
        kept, right = pooled(chosen)
        return right / kept if kept else float("nan")

    def net_per_context(chosen: list[str]) -> float:
        kept, right = pooled(chosen)
        return (2 * right - kept) / len(chosen)

    kept, right = pooled(names)
    return {
        "rule": rule.params(),
        "kept": kept,
        "right": right,
        "share_right": share(names) if kept else None,
        "share_interval": context_interval(names, share),
        "net_right_per_context": net_per_context(names),
        "net_interval": context_interval(names, net_per_context),
    }


def stage_losses(rule: FilterRule, candidates: Sequence[Candidate]) -> list[dict[str, Any]]:
    """Candidates and right ones left after each filter of ``rule`` in turn: what each stage loses."""
    stages = [
        ("answered", lambda c: True),
        ("agreed", lambda c: c["votes"] >= min(rule.agree, c["samples"])),
        ("checked", lambda c: c["checked"]),
        ("grounded", lambda c: c["grounded"]),
        ("judged", rule.keeps),
    ]
    left = list(candidates)
    table = []
    for stage, passes in stages:
        left = [candidate for candidate in left if passes(candidate)]
        table.append({"stage": stage, "left": len(left), "right": sum(c["right"] for c in left)})
    return table


def net_difference(rule: FilterRule, baseline: FilterRule, contexts: Mapping[str, Sequence[Candidate]]) -> dict:
    """Right-minus-wrong facts per context that ``rule`` keeps beyond ``baseline``, paired on the
    same contexts, with a context-bootstrap interval."""
    names = sorted(contexts)

    def difference(chosen: list[str]) -> float:
        kept = [c for name in chosen for c in contexts[name]]
        return (net_right(rule, kept) - net_right(baseline, kept)) / len(chosen)

    return {"estimate": difference(names), "interval": context_interval(names, difference)}

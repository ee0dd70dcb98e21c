"""``ttc fit-router``: ``auto``'s allocation rule per budget, fitted by replaying a dev sweep's samples.

For each budget every rule of a grid (wave sizes, settle and give-up thresholds) is
replayed on every dev item (``harness.replay``) and compared with best-of-N majority at
that budget item by item; the rule with the surest gain wins (``fit_budget``). A 5-fold
split of the dev items reports how the fitting procedure does on items it did not see,
which the policy file records next to the rules.

A rule switches to a step search only where the dev sweep ran that search and replaying the
switch on its stored points raises the rule's bound (``fit_budget``); the fit tries each
search alone and seeded with the samples already drawn (``Switch.vote_with_samples``).

The cost a rule saves is counted in compute tokens, or (``cost="eflops"``) in Kinetics'
eFLOPs, which charge the KV-cache reads that dominate a small model's decoding on real
hardware; the budgets themselves stay in tokens, as the meter enforces them.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.replay import Outcome, Point, StoredItem, best_of_n_within, replay
from orchestrator.core.costmodel import ModelShape
from orchestrator.core.errors import InvalidRequestError
from strategies.allocation import Allocation, Switch
from strategies.policy import BudgetRule, Policy, QuestionClass, Sampling

Cost = Literal["tokens", "eflops"]

FOLDS = 5
SWITCH_TRIES = 20  # give-up rules tried again with each search to switch to
MIN_SLOPE = 1e-6  # accuracy per token: one right answer is never worth more than a million tokens
GIVE_UPS: list[tuple[int | None, float]] = [(None, 0.0), *itertools.product((4, 6, 8, 12), (0.26, 0.34, 0.5))]


MIN_CLASS_ITEMS = 40  # a question class is fitted on at least this many dev items
MIN_CLASS_GAIN = 0.02  # and its split must separate easy from hard items at least this much (Gini)
ACCEPT_SCORES = (0.75, 0.9)  # the calculator: 0.8 checked arithmetic, 0.95 checked with a stated answer


def grid(max_samples: int) -> list[Allocation]:
    """The rules the fit chooses among (first and later wave sizes, settle and give-up thresholds)."""
    rules = []
    for first, wave, share, votes, (after, below) in itertools.product(
        (2, 4, 8), (1, 2, 4), (0.5, 0.6, 0.75, 1.0), (2, 3, 4), GIVE_UPS
    ):
        if first > max_samples or (after is not None and after <= first // 2):
            continue
        rules.append(
            Allocation(
                first_wave=first,
                wave=wave,
                max_samples=max_samples,
                stop_share=share,
                stop_votes=votes,
                give_up_after=after,
                give_up_share=below,
            )
        )
    return rules + accepting_grid(max_samples)


def accepting_grid(max_samples: int) -> list[Allocation]:
    """Rules that sample until the verifier accepts one (from a single sample on), settle on agreeing
    votes, and stop after a give-up count with none accepted."""
    rules = []
    for first, wave, accept, (share, votes), after in itertools.product(
        (1, 2, 4), (1, 2), ACCEPT_SCORES, ((1.0, 2), (0.75, 3), (1.0, max_samples)), (2, 4, 8, None)
    ):
        if first > max_samples or (after is not None and after < first):
            continue
        rules.append(
            Allocation(
                first_wave=first,
                wave=wave,
                max_samples=max_samples,
                stop_share=share,
                stop_votes=votes,
                give_up_after=after,
                give_up_share=1.0,  # after the count, give up unless every sample agrees
                accept_score=accept,
            )
        )
    return rules


@dataclass(frozen=True)
class Replayer:
    """What every replay of one fit shares: the typical sample length, the cost axis the gain is
    counted on, and the model's shape (needed for eFLOPs)."""

    typical: int
    cost: Cost = "tokens"
    shape: ModelShape | None = None

    def __post_init__(self) -> None:
        if self.cost == "eflops" and self.shape is None:
            raise InvalidRequestError("fitting on eFLOPs needs the model's shape")

    def auto(self, rule: Allocation, item: StoredItem, budget: int) -> Outcome:
        return replay(rule, item, budget, self.typical, self.shape)

    def majority(self, item: StoredItem, budget: int) -> Outcome:
        return best_of_n_within(item, budget, shape=self.shape)

    def cost_of(self, spent: Outcome | Point) -> float:
        if self.cost == "tokens":
            return spent.tokens
        if spent.eflops is None:  # a switched-to search's point stored without eFLOPs (fit_policy drops those)
            raise InvalidRequestError("a replayed outcome has no eFLOPs to fit on")
        return spent.eflops

    def auto_point(self, rule: Allocation, items: Sequence[StoredItem], budget: int) -> Point:
        return Point.of([self.auto(rule, item, budget) for item in items])

    def majority_point(self, items: Sequence[StoredItem], budget: int) -> Point:
        return Point.of([self.majority(item, budget) for item in items])


def spend_it_all(max_samples: int) -> Allocation:
    """The rule that never stops early: best-of-N majority within the budget, drawn in waves."""
    return Allocation(
        first_wave=min(4, max_samples),
        wave=4,
        max_samples=max_samples,
        stop_share=1.0,
        stop_votes=max_samples,
        give_up_after=None,
    )


def marginal_slope(items: Sequence[StoredItem], budget: int, replayer: Replayer) -> float:
    """Accuracy majority voting buys per unit of cost just below ``budget`` (from half of it to all
    of it) on these items; at least ``MIN_SLOPE`` per token: where more samples buy nothing, every
    lost answer is dear."""
    half, full = replayer.majority_point(items, max(1, budget // 2)), replayer.majority_point(items, budget)
    spent = replayer.cost_of(full) - replayer.cost_of(half)
    floor = MIN_SLOPE * (full.tokens / replayer.cost_of(full) if replayer.cost_of(full) else 1.0)
    return max(floor, (full.accuracy - half.accuracy) / max(1.0, spent))


def fit_budget(
    items: Sequence[StoredItem],
    budget: int,
    replayer: Replayer,
    rules: Sequence[Allocation],
    switches: Sequence[Switch] = (),
) -> tuple[Allocation, Point, Point]:
    """The rule whose gain over majority at ``budget`` has the best lower bound: (rule, its point,
    majority's point).

    A rule's gain on an item, in the replayer's cost, is what it saves, plus each answer it gets
    right that majority does not (less each it loses) priced at what majority voting pays for one
    more right answer near this budget (``marginal_slope``). The bound is the mean gain less one
    standard error over items, so with a hundred-odd items and a thousand rules the choice does
    not chase noise. ``spend_it_all`` (majority voting in waves sized as online) is replayed first
    and keeps ties; the budget-sized waves can leave it a little short of the derived best-of-N
    point, which knows the samples' lengths in hindsight.

    ``switches`` are the step searches the dev sweep ran: the best give-up rules are tried again
    switching to each instead of answering, alone and seeded with the drawn samples' votes,
    replayed on the search's own dev points, and kept only if that raises the bound.
    """
    price = 1.0 / marginal_slope(items, budget, replayer)
    baseline = [replayer.majority(item, budget) for item in items]
    cost = replayer.cost_of

    def bound(rule: Allocation) -> float:
        outcomes = [replayer.auto(rule, item, budget) for item in items]
        gains = [price * (o.correct - b.correct) - (cost(o) - cost(b)) for o, b in zip(outcomes, baseline, strict=True)]
        return statistics.fmean(gains) - statistics.stdev(gains) / math.sqrt(len(gains))

    # the fallback first, so a tie keeps it; it is replayed too: its waves are sized as online
    scored = [(bound(rule), rule) for rule in [spend_it_all(min(item.size for item in items)), *rules]]
    giving_up = sorted((pair for pair in scored if pair[1].give_up_after is not None), key=lambda pair: -pair[0])
    seeded = [s.model_copy(update={"vote_with_samples": joined}) for s in switches for joined in (False, True)]
    for _, rule in giving_up[:SWITCH_TRIES]:
        tried = [rule.model_copy(update={"switch": switch}) for switch in seeded]
        scored += [(bound(switching), switching) for switching in tried]
    best = max(scored, key=lambda pair: pair[0])[1]  # max keeps the first of equals
    return best, replayer.auto_point(best, items, budget), Point.of(baseline)


def held_out(
    items: Sequence[StoredItem],
    budget: int,
    replayer: Replayer,
    rules: Sequence[Allocation],
    switches: Sequence[Switch] = (),
) -> dict:
    """The fitting procedure on 4/5 of the dev items, scored on the fifth, over 5 folds."""
    auto, majority = [], []
    for fold in range(FOLDS):
        train = [item for index, item in enumerate(items) if index % FOLDS != fold]
        test = [item for index, item in enumerate(items) if index % FOLDS == fold]
        if not train or not test:
            continue
        rule, _, _ = fit_budget(train, budget, replayer, rules, switches)
        auto += [replayer.auto(rule, item, budget) for item in test]
        majority += [replayer.majority(item, budget) for item in test]
    auto_point, majority_point = Point.of(auto), Point.of(majority)
    return {
        "auto_accuracy": auto_point.accuracy,
        "auto_tokens": auto_point.tokens,
        "auto_eflops": auto_point.eflops,
        "majority_accuracy": majority_point.accuracy,
        "majority_tokens": majority_point.tokens,
        "majority_eflops": majority_point.eflops,
    }


def fit_policy(
    items: Sequence[StoredItem],
    budgets: Sequence[int],
    sampling: Sampling,
    model: str,
    source: str,
    version: str | None = None,
    switches: Sequence[Switch] = (),
    cost: Cost = "tokens",
    shape: ModelShape | None = None,
    classes: bool = False,
) -> Policy:
    """One rule per budget (the smallest budget's applies below it), with the dev report in ``fitted``;
    ``model`` is the catalogue name of the model whose samples these are (the policy records it).
    ``switches``: the step searches the dev sweep ran (their points must be on ``items``); ``cost``:
    the axis a rule's saving is counted on (``"eflops"`` needs the model's ``shape``). With
    ``classes``, short and long questions get rules of their own where their prompt length
    separates easy from hard items (``class_threshold``)."""
    max_samples = min(item.size for item in items)
    typical = round(statistics.median(tokens for item in items for tokens in item.tokens))
    sampling = sampling.model_copy(update={"typical_tokens": typical})
    replayer = Replayer(typical, cost, shape)
    if cost == "eflops" and _lack_eflops(items, switches):
        switches = ()  # a search's points stored without eFLOPs cannot be priced on that axis
    candidates = grid(max_samples)
    threshold = class_threshold(items) if classes else None
    short = [item for item in items if threshold is not None and item.prompt_length <= threshold]
    long = [item for item in items if threshold is None or item.prompt_length > threshold]
    rules, report = fit_rules(long, budgets, replayer, candidates, switches)
    question_classes, class_report = [], {}
    if threshold is not None:
        short_rules, short_report = fit_rules(short, budgets, replayer, candidates, switches)
        question_classes = [QuestionClass(max_prompt_tokens=threshold, rules=short_rules)]
        class_report = {"max_prompt_tokens": threshold, "short_items": len(short), "short_budgets": short_report}
    return Policy(
        version=version or time.strftime("%Y-%m-%d.%H%M%S") + (f".{source}" if source else ""),
        model=model,
        description=f"Fitted by ttc fit-router by replaying {model}'s stored samples of dev sweep {source!r} "
        f"({len(items)} items, {len(candidates)} candidate rules per budget).",
        sampling=sampling,
        rules=rules,
        classes=question_classes,
        fitted={
            "sweep": source,
            "items": len(items),
            "candidates": len(candidates),
            "cost": cost,
            "switches_tried": [switch.strategy for switch in switches],
            "budgets": report,
            **({"classes": class_report} if classes else {}),
        },
    )


def fit_rules(
    items: Sequence[StoredItem],
    budgets: Sequence[int],
    replayer: Replayer,
    candidates: Sequence[Allocation],
    switches: Sequence[Switch],
) -> tuple[list[BudgetRule], dict[str, Any]]:
    """A rule per budget fitted on ``items``, and per budget its dev point, majority's and the held-out folds."""
    rules, report = [], {}
    for index, budget in enumerate(sorted(budgets)):
        rule, point, baseline = fit_budget(items, budget, replayer, candidates, switches)
        rules.append(BudgetRule(min_tokens=0 if index == 0 else budget, allocation=rule, budget=budget))
        report[str(budget)] = {
            "dev_auto": point.__dict__,
            "dev_majority": baseline.__dict__,
            "held_out_folds": held_out(items, budget, replayer, candidates, switches),
        }
    return rules, report


def class_threshold(items: Sequence[StoredItem]) -> int | None:
    """The prompt length that best splits items the first sample gets right from those it does not
    (a decision stump: the largest drop in Gini impurity), or None where no split leaves both sides
    ``MIN_CLASS_ITEMS`` items and drops the impurity by ``MIN_CLASS_GAIN``.

    Example: one-line sums the model gets right and long word problems it does not split between them.
    """
    labelled = sorted((item.prompt_length, item.answers[0] in item.right) for item in items)
    total = _gini([right for _, right in labelled])
    best, best_gain = None, MIN_CLASS_GAIN
    for cut in range(MIN_CLASS_ITEMS, len(labelled) - MIN_CLASS_ITEMS + 1):
        if labelled[cut - 1][0] == labelled[cut][0]:
            continue  # a threshold cannot split equal lengths
        short, long = [r for _, r in labelled[:cut]], [r for _, r in labelled[cut:]]
        gain = total - (len(short) * _gini(short) + len(long) * _gini(long)) / len(labelled)
        if gain > best_gain:
            best, best_gain = labelled[cut - 1][0], gain
    return best


def _gini(labels: Sequence[bool]) -> float:
    share = statistics.fmean(labels) if labels else 0.0
    return 2 * share * (1 - share)


def _lack_eflops(items: Sequence[StoredItem], switches: Sequence[Switch]) -> bool:
    """Whether any stored search point a switch would read has no eFLOPs."""
    return bool(switches) and any(
        point.eflops is None for item in items for points in item.searches.values() for point in points.values()
    )

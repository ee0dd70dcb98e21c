"""``ttc fit-router``: ``auto``'s allocation rule per budget, fitted by replaying a dev sweep's samples.

For each budget every rule of a grid (wave sizes, settle and give-up thresholds) is
replayed on every dev item (``harness.replay``) and compared with best-of-N majority at
that budget item by item; the rule with the surest gain wins (``fit_budget``). A 5-fold
split of the dev items reports how the fitting procedure does on items it did not see,
which the policy file records next to the rules.

With question classes (``harness.classes``: prompt-length cuts), each class gets rules of its
own, and every class is fitted at one price of a right answer per budget, its whole stream's:
that is what lets a router spend differently on different kinds of question (Snell et al.),
sending one sample to questions whose votes buy little and more to those where votes pay. The
grid holds plain best-of-n rules for that (``fixed_grid``).

A rule switches to a step search only where the dev sweep ran that search and replaying the
switch on its stored points raises the rule's bound (``fit_budget``); the fit tries each
search alone and seeded with the samples already drawn (``Switch.vote_with_samples``).

The cost a rule saves is counted in compute tokens, or (``cost="eflops"``) in Kinetics'
eFLOPs, which charge the KV-cache reads that dominate a small model's decoding on real
hardware; the budgets themselves stay in tokens, as the meter enforces them.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.classes import class_cuts
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


FIXED_NS = (1, 2, 3, 4, 6, 8, 12)  # plain best-of-n rules: what a class whose votes buy little should draw
ACCEPT_SCORES = (0.75, 0.9)  # the calculator: 0.8 checked arithmetic, 0.95 checked with a stated answer
# A trained verifier's scores are probabilities of its own calibration: its thresholds are read off
# the dev samples' scores, at the share of samples each would accept.
ACCEPT_SHARES = (0.5, 0.3, 0.15)


def accept_scores(items: Sequence[StoredItem]) -> tuple[float, ...]:
    """The acceptance thresholds the grid tries: the calculator's two, and the dev scores' values
    above which half, 30% and 15% of the samples lie (so any verifier's scale is covered).

    Example: scores spread evenly over [0, 1] add thresholds near 0.5, 0.7 and 0.85.
    """
    scores = sorted(score for item in items for score in item.scores if score is not None)
    if not scores:
        return ACCEPT_SCORES
    quantiles = {round(scores[min(int(len(scores) * (1 - share)), len(scores) - 1)], 4) for share in ACCEPT_SHARES}
    return tuple(sorted(set(ACCEPT_SCORES) | quantiles))


def grid(max_samples: int, accepting: Sequence[float] = ACCEPT_SCORES) -> list[Allocation]:
    """The rules the fit chooses among (first and later wave sizes, settle and give-up thresholds;
    ``accepting``: the verifier scores that accept a sample at once)."""
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
    return rules + accepting_grid(max_samples, accepting) + fixed_grid(max_samples)


def fixed_grid(max_samples: int) -> list[Allocation]:
    """Plain best-of-n in one request for a few n below ``max_samples``: no stopping rule can do
    better on questions where one sample answers as well as many (the model rarely agrees with
    itself there), and a router sending them one sample saves its budget for the rest."""
    return [
        Allocation(first_wave=n, wave=n, max_samples=n, stop_share=1.0, stop_votes=n, give_up_after=None)
        for n in FIXED_NS
        if n < max_samples
    ]


def accepting_grid(max_samples: int, accepting: Sequence[float] = ACCEPT_SCORES) -> list[Allocation]:
    """Rules that sample until the verifier accepts one (from a single sample on), settle on agreeing
    votes, and stop after a give-up count with none accepted."""
    rules = []
    for first, wave, accept, (share, votes), after in itertools.product(
        (1, 2, 4), (1, 2), accepting, ((1.0, 2), (0.75, 3), (1.0, max_samples)), (2, 4, 8, None)
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


def answer_price(items: Sequence[StoredItem], budget: int, replayer: Replayer) -> float:
    """What one more right answer costs majority voting near ``budget`` on these items (in the
    replayer's cost): the price a rule's gained or lost answers are counted at."""
    return 1.0 / marginal_slope(items, budget, replayer)


def fit_budget(
    items: Sequence[StoredItem],
    budget: int,
    replayer: Replayer,
    rules: Sequence[Allocation],
    switches: Sequence[Switch] = (),
    price: float | None = None,
) -> tuple[Allocation, Point, Point]:
    """The rule whose gain over majority at ``budget`` has the best lower bound: (rule, its point,
    majority's point).

    A rule's gain on an item, in the replayer's cost, is what it saves, plus each answer it gets
    right that majority does not (less each it loses) priced at ``price``: by default what majority
    voting pays for one more right answer near this budget on these items (``answer_price``); a
    question class is fitted at its whole stream's price, so it spends less where its answers
    cost more than the stream's. The bound is the mean gain less one
    standard error over items, so with a hundred-odd items and a thousand rules the choice does
    not chase noise. ``spend_it_all`` (majority voting in waves sized as online) is replayed first
    and keeps ties; the budget-sized waves can leave it a little short of the derived best-of-N
    point, which knows the samples' lengths in hindsight.

    ``switches`` are the step searches the dev sweep ran: the best give-up rules are tried again
    switching to each instead of answering, alone and seeded with the drawn samples' votes,
    replayed on the search's own dev points, and kept only if that raises the bound.
    """
    price = price or answer_price(items, budget, replayer)
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
    price: float | None = None,
) -> dict:
    """The fitting procedure on 4/5 of the dev items, scored on the fifth, over 5 folds (at ``price``
    when given: a class's folds keep its stream's price)."""
    auto, majority = [], []
    for fold in range(FOLDS):
        train = [item for index, item in enumerate(items) if index % FOLDS != fold]
        test = [item for index, item in enumerate(items) if index % FOLDS == fold]
        if not train or not test:
            continue
        rule, _, _ = fit_budget(train, budget, replayer, rules, switches, price)
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
    candidates: Sequence[Allocation] | None = None,
) -> Policy:
    """One rule per budget (the smallest budget's applies below it), with the dev report in ``fitted``;
    ``model`` is the catalogue name of the model whose samples these are (the policy records it).
    ``switches``: the step searches the dev sweep ran (their points must be on ``items``); ``cost``:
    the axis a rule's saving is counted on (``"eflops"`` needs the model's ``shape``). With
    ``classes``, questions get rules per prompt-length class where their length separates easy
    from hard items (``harness.classes``); the last class's report is the policy's ``budgets``.
    ``candidates``: the rules to choose among (default ``grid``)."""
    max_samples = min(item.size for item in items)
    typical = round(statistics.median(tokens for item in items for tokens in item.tokens))
    sampling = sampling.model_copy(update={"typical_tokens": typical})
    replayer = Replayer(typical, cost, shape)
    if cost == "eflops" and _lack_eflops(items, switches):
        switches = ()  # a search's points stored without eFLOPs cannot be priced on that axis
    candidates = candidates or grid(max_samples, accept_scores(items))
    # one price of a right answer per budget for the whole stream: every class is fitted at it, so
    # a class whose answers cost more than the stream's spends less and leaves tokens to the rest
    prices = {budget: answer_price(items, budget, replayer) for budget in budgets}
    cuts = class_cuts(items) if classes else []
    groups: list[list[StoredItem]] = [[] for _ in range(len(cuts) + 1)]
    for item in items:  # the first class whose cut the prompt's length does not pass, as Policy.rule_for reads it
        groups[bisect.bisect_left(cuts, item.prompt_length)].append(item)
    fitted = [fit_rules(group, budgets, replayer, candidates, switches, prices) for group in groups]
    rules, report = fitted[-1]  # the longest questions' rules are the policy's own
    shorter = zip(cuts, fitted[:-1], strict=True)
    question_classes = [QuestionClass(max_prompt_tokens=cut, rules=found[0]) for cut, found in shorter]
    class_report = [
        {"max_prompt_tokens": cut, "items": len(group), "budgets": found[1]}
        for cut, group, found in zip([*cuts, None], groups, fitted, strict=True)
    ]
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
            "prices": {str(budget): price for budget, price in prices.items()},
            **({"classes": class_report} if classes else {}),
        },
    )


def fit_rules(
    items: Sequence[StoredItem],
    budgets: Sequence[int],
    replayer: Replayer,
    candidates: Sequence[Allocation],
    switches: Sequence[Switch],
    prices: dict[int, float] | None = None,
) -> tuple[list[BudgetRule], dict[str, Any]]:
    """A rule per budget fitted on ``items`` (at ``prices``: budget -> price of a right answer, else
    the items' own), and per budget its dev point, majority's and the held-out folds."""
    rules, report = [], {}
    for index, budget in enumerate(sorted(budgets)):
        price = (prices or {}).get(budget)
        rule, point, baseline = fit_budget(items, budget, replayer, candidates, switches, price)
        rules.append(BudgetRule(min_tokens=0 if index == 0 else budget, allocation=rule, budget=budget))
        report[str(budget)] = {
            "dev_auto": point.__dict__,
            "dev_majority": baseline.__dict__,
            "held_out_folds": held_out(items, budget, replayer, candidates, switches, price),
        }
    return rules, report


def _lack_eflops(items: Sequence[StoredItem], switches: Sequence[Switch]) -> bool:
    """Whether any stored search point a switch would read has no eFLOPs."""
    return bool(switches) and any(
        point.eflops is None for item in items for points in item.searches.values() for point in points.values()
    )

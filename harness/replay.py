"""Replaying ``auto``'s allocation rule, and best-of-N, on a sweep's stored samples.

A dev or test sweep's best-of-N pass keeps every item's samples in the order they were
drawn. Any sequential rule can be replayed on them offline in microseconds: the rule
sees the same samples, in the same order, that it would have drawn online with the
policy's sampling settings, so its tokens and accuracy are exact up to two details
that the replay states rather than hides:

- a wave online is one request whose samples the meter may cut short when the budget is
  nearly spent; the replay instead stops at the first stored sample that does not fit
  (exactly how the sweep derives best-of-N at a budget, so both are counted alike);
- a later wave's prompt is served from the prefix cache online, and is not charged again here.

Given the model's shape, every outcome also carries its Kinetics eFLOPs (each wave priced as
the one request it is online, ``orchestrator.core.costmodel``), so a rule can be fitted on
that cost axis instead of tokens. Grading happens once per distinct answer when the items
are loaded.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from harness.datasets import Problem
from harness.grading import is_correct
from harness.passes import SamplePass, affordable_prefix
from harness.results import SweepResult
from harness.sweep import StrategySpec
from orchestrator.core.costmodel import ModelShape, generation_cost
from orchestrator.core.errors import InvalidRequestError
from strategies.allocation import (
    Allocation,
    Switch,
    Votes,
    decide,
    final_answer,
    first_accepted,
    first_wave_size,
    joined_vote,
    mean_length,
)
from strategies.selection import Rule, Sample, choose, split_steps
from verifiers.arith_steps import NEUTRAL, sample_verdict, score_step

NOT_SEARCHES = ("best_of_n", "probe", "auto")  # a sweep's configurations that are not step searches


@dataclass(frozen=True)
class SearchPoint:
    """What a step search the sweep ran on an item did at one budget."""

    correct: bool
    tokens: int
    answer: str | None = None
    eflops: float | None = None  # None: stored before sweeps kept it


@dataclass(frozen=True)  # cached_property needs a __dict__: no slots
class StoredItem:
    """One item's stored samples: their answers, lengths and verifier scores, and which answers are right."""

    id: str
    prompt_tokens: int
    answers: tuple[str | None, ...]
    tokens: tuple[int, ...]
    scores: tuple[float | None, ...]
    right: frozenset[str]
    searches: dict[str, dict[int, SearchPoint]] = field(default_factory=dict, compare=False)
    """Step searches the sweep ran on the item: configuration label -> budget -> its point."""
    prompt_length: int = 0
    """The whole prompt (``prompt_tokens`` is what the first request could not find cached)."""

    @property
    def size(self) -> int:
        return len(self.answers)

    @cached_property
    def samples(self) -> tuple[Sample, ...]:
        """The stored samples as ``Sample``s (answer, length, score): what the selection rules read."""
        return tuple(
            Sample(text="", answer=answer, tokens=tokens, score=score)
            for answer, tokens, score in zip(self.answers, self.tokens, self.scores, strict=True)
        )


@dataclass(frozen=True)
class Point:
    """Accuracy, mean compute tokens, mean samples drawn and mean eFLOPs of one method over a set of items."""

    accuracy: float
    tokens: float
    samples: float
    eflops: float | None = None

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> Point:
        known = [o.eflops for o in outcomes if o.eflops is not None]
        return cls(
            statistics.fmean(o.correct for o in outcomes),
            statistics.fmean(o.tokens for o in outcomes),
            statistics.fmean(o.samples for o in outcomes),
            statistics.fmean(known) if len(known) == len(outcomes) else None,
        )


@dataclass(frozen=True)
class Outcome:
    """What a rule did on one item: whether its answer is right, tokens spent, samples drawn, why it
    stopped, and its eFLOPs (None when replayed without the model's shape)."""

    correct: bool
    tokens: int
    samples: int
    reasons: tuple[str, ...]
    eflops: float | None = None


Rescore = Callable[[str, str], float]
"""A stored sample's score from its item's question and its text."""


def sample_key(question: str, text: str) -> str:
    """What a table of stored scores is keyed by: the question and the sample's text, hashed.

    Example: ``sample_key("2 + 3?", "2 + 3 = 5.")`` is 20 hex digits."""
    return hashlib.sha256(f"{question}\x00{text}".encode()).hexdigest()[:20]


def rescorer(verifier: str | None, table: Mapping[str, float] | None = None) -> Rescore | None:
    """How stored samples are scored again offline: by a free, text-only verifier, or (``table``)
    by the scores a served verifier gave them earlier (``sample_key`` -> score). None: keep the
    stored scores, which the sweep's pass verifier gave. Example: ``rescorer("arith_checked")("", "3 * 4 = 12.")``."""
    if verifier is None:
        if table is not None:
            raise InvalidRequestError("a table of stored scores needs the verifier that gave them (--verifier)")
        return None
    if table is not None:

        def stored(question: str, text: str) -> float:
            key = sample_key(question, text)
            if key not in table:
                raise InvalidRequestError(
                    f"a stored sample has no {verifier} score in the table: score the sweep first"
                )
            return table[key]

        return stored
    scorers: dict[str, Rescore] = {
        "arith_checked": lambda _question, text: sample_verdict(split_steps(text)),
        "arith_steps": lambda _question, text: score_step(split_steps(text)[-1]) if split_steps(text) else NEUTRAL,
    }
    if verifier not in scorers:
        raise InvalidRequestError(
            f"stored samples can be scored again only by {sorted(scorers)}, or by a served verifier's "
            f"stored scores (--scores), not {verifier!r}"
        )
    return scorers[verifier]


def stored_items(
    problems: Sequence[Problem], passes: dict[str, str], rescore: Rescore | None = None
) -> list[StoredItem]:
    """The items of ``problems`` that have a stored pass (the first seed's, when there are several);
    with ``rescore``, every sample's score is its verdict on the sample's text instead of the stored one."""
    by_item = first_passes(passes)
    return [item_of(problem, by_item[problem.id], rescore) for problem in problems if problem.id in by_item]


def first_passes(passes: dict[str, str]) -> dict[str, dict]:
    """Each item's stored pass, decoded: the first seed's when there are several (what replay reads).

    Example: ``first_passes(dump["passes"])["arith-0-424"].samples[0].text``.
    """
    by_item: dict[str, SamplePass] = {}
    for key, raw in sorted(passes.items()):
        item_id, _digest, _seed = key.rsplit("|", 2)
        if item_id not in by_item:
            by_item[item_id] = SamplePass.model_validate_json(raw)
    return by_item


def item_of(problem: Problem, sample_pass: SamplePass, rescore: Rescore | None = None) -> StoredItem:
    """One stored pass as a ``StoredItem``, each distinct answer graded with the first sample stating it."""
    samples = sample_pass.samples
    first_text: dict[str, str] = {}
    for sample in samples:
        if sample.answer is not None:
            first_text.setdefault(sample.answer, sample.text)
    return StoredItem(
        id=problem.id,
        prompt_length=sample_pass.usage.prompt_tokens,  # the pass is one request
        prompt_tokens=sample_pass.prompt_compute,
        answers=tuple(sample.answer for sample in samples),
        tokens=tuple(sample_pass.lengths),
        scores=tuple(rescore(problem.question, sample.text) if rescore else sample.score for sample in samples),
        right=frozenset(answer for answer, text in first_text.items() if is_correct(problem, answer, text)),
    )


def replay(
    rule: Allocation, item: StoredItem, budget: int | None, typical_tokens: int, shape: ModelShape | None = None
) -> Outcome:
    """Run ``rule`` on the item's stored samples under ``budget`` compute tokens (None: unlimited).

    Each wave is charged as the meter charges it online: the wave's samples share what the budget
    leaves after the request's prompt, ``(left - prompt) // size`` tokens each; a stored sample
    longer than that is cut there, charged what it decoded, and states no answer. With ``shape``,
    each wave's eFLOPs are added up too.
    """
    spent, eflops, answers, scores, reasons = 0, 0.0, [], [], []
    limit = min(rule.max_samples, item.size)
    rule = rule.model_copy(update={"max_samples": limit})  # the replay cannot draw past what is stored

    def left() -> int | None:  # what online ``auto`` sees: the budget less the next request's prompt
        return None if budget is None else budget - spent - item.prompt_tokens

    size = first_wave_size(rule, left(), typical_tokens)
    while size > 0:
        cap = None if budget is None else left() // size
        if cap is not None and cap < 1:
            reasons.append("the budget left affords no more samples")
            break
        first = not answers
        spent += item.prompt_tokens if first else 0  # later waves find the prompt in the prefix cache
        lengths = []
        for index in range(len(answers), min(len(answers) + size, limit)):
            fits = cap is None or item.tokens[index] <= cap
            lengths.append(item.tokens[index] if fits else cap)
            answers.append(item.answers[index] if fits else None)
            scores.append(item.scores[index] if fits else None)
        spent += sum(lengths)
        eflops += wave_eflops(shape, item, lengths, first)
        expected = mean_length(item.tokens[: len(answers)], typical_tokens)
        accepted = first_accepted(answers, scores, rule.accept_score)
        decision = decide(rule, Votes.of(answers), left(), expected, accepted)
        reasons.append(decision.reason)
        if decision.action == "switch" and rule.switch is not None:
            searched = _search_within(item, switch_label(rule.switch), left())
            if searched is not None:  # the sweep's point for the budget left: what the search would do
                correct = searched.correct
                if rule.switch.vote_with_samples:
                    answer = joined_vote(answers, searched.answer)
                    correct = searched.correct if answer == searched.answer else answer in item.right
                tokens, total = spent + searched.tokens, _plus(eflops, searched.eflops, shape)
                return Outcome(correct, tokens, len(answers), (*reasons, "switched"), total)
        size = decision.size if decision.action == "wave" else 0
    if not answers:
        return Outcome(False, item.prompt_tokens, 0, ("the budget cannot fit one sample",), _plus(0.0, 0.0, shape))
    correct = final_answer(answers, scores, rule) in item.right
    return Outcome(correct, spent, len(answers), tuple(reasons), _plus(eflops, 0.0, shape))


def wave_eflops(shape: ModelShape | None, item: StoredItem, lengths: Sequence[int], first: bool) -> float:
    """One request's eFLOPs: ``lengths`` decoded over the item's prompt, cached after the first
    request (0 without the model's shape)."""
    if shape is None:
        return 0.0
    cached = item.prompt_length - item.prompt_tokens if first else item.prompt_length
    return generation_cost(shape, item.prompt_length, cached, list(lengths)).eflops


def _plus(eflops: float, more: float | None, shape: ModelShape | None) -> float | None:
    """eFLOPs summed, or None where they are not known (no shape, or a search point stored without them)."""
    return None if shape is None or more is None else eflops + more


def switch_label(switch: Switch) -> str:
    """The sweep's label of the search a rule switches to (``StrategySpec.label``)."""
    return StrategySpec(strategy=switch.strategy, params=switch.params).label


def _search_within(item: StoredItem, label: str, tokens_left: int | None) -> SearchPoint | None:
    """The search's stored point at the largest swept budget the tokens left afford (None: none does;
    online, a search that cannot fit its budget ends, and the samples' vote answers)."""
    points = item.searches.get(label, {})
    affordable = [budget for budget in points if tokens_left is None or budget <= tokens_left]
    return points[max(affordable)] if affordable else None


def attach_searches(items: Sequence[StoredItem], results: Sequence[SweepResult]) -> list[StoredItem]:
    """The items with the sweep's step-search points (every strategy but best-of-N, probe and auto)."""
    found: dict[str, dict[str, dict[int, SearchPoint]]] = {}
    for result in results:
        if result.strategy_name not in NOT_SEARCHES and result.seed == 0:
            per_item = found.setdefault(result.item_id, {}).setdefault(result.strategy, {})
            point = SearchPoint(result.correct, result.compute_tokens, result.answer, result.eflops)
            per_item[result.budget] = point
    return [replace(item, searches=found.get(item.id, {})) for item in items]


def best_of_n(item: StoredItem, n: int, selection: Rule = "majority", shape: ModelShape | None = None) -> Outcome:
    """Best-of-N on the first ``n`` samples, chosen by ``selection`` as ``strategies.selection.choose`` does."""
    taken = min(n, item.size)
    spent = item.prompt_tokens + sum(item.tokens[:taken])
    eflops = _plus(wave_eflops(shape, item, item.tokens[:taken], first=True), 0.0, shape)
    return Outcome(chosen(item, taken, selection) in item.right, spent, taken, (), eflops)


def best_of_n_within(
    item: StoredItem, budget: int, selection: Rule = "majority", shape: ModelShape | None = None
) -> Outcome:
    """Best-of-N on the longest prefix of samples whose tokens fit in ``budget`` (the sweep's derived point)."""
    taken, spent = affordable_prefix(item.prompt_tokens, item.tokens, budget)
    eflops = _plus(wave_eflops(shape, item, item.tokens[:taken], first=True), 0.0, shape)
    return Outcome(taken > 0 and chosen(item, taken, selection) in item.right, spent, taken, (), eflops)


def chosen(item: StoredItem, taken: int, selection: Rule) -> str | None:
    """The answer ``selection`` picks among the first ``taken`` samples, as a strategy picks it."""
    return choose(item.samples[:taken], selection).answer


def baseline_table(
    items: Sequence[StoredItem], selection: Rule = "majority", budgets: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Per item, (correct, tokens) of every best-of-N point with ``selection`` as two arrays: one
    column per N = 1..size, then one per budget (the sweep's derived point, which draws samples
    while they fit and so can be cheaper than any fixed N)."""
    size = min(item.size for item in items)
    rows = [
        [best_of_n(item, n, selection) for n in range(1, size + 1)]
        + [best_of_n_within(item, budget, selection) for budget in budgets]
        for item in items
    ]
    correct = np.array([[o.correct for o in row] for row in rows], dtype=float)
    tokens = np.array([[o.tokens for o in row] for row in rows], dtype=float)
    return correct, tokens

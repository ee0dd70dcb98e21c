"""What sleep-time compute bought, from a benchmark's rows: accuracy with intervals, test-time
tokens against the no-memory frontier, cost per query at several queries per context, and how
many of the facts each filter kept were right.

A row is one answered question under one configuration (``label``): ``{"label", "context",
"correct", "completion_tokens", "compute_tokens"}``. Intervals resample *contexts* (a context's
questions share its memory, so they are not independent), 95 %, percentile bootstrap.

Example: ``frontier_tokens(rows, "none/")`` is the no-memory hull of (tokens, accuracy).
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from harness.efficiency import tokens_to_reach
from harness.report import concave_hull

Row = dict[str, Any]
BOOTSTRAP = 1000
QUERIES_PER_CONTEXT = (1, 4, 10)
UNREACHED = "at least"  # tokens_to_reach's note when the frontier never gets there


def by_context(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """The rows of each context, in order."""
    grouped: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[row["context"]].append(row)
    return dict(grouped)


def by_label(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """The rows of each configuration, labels in order."""
    grouped: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[row["label"]].append(row)
    return dict(sorted(grouped.items()))


def points(rows: Sequence[Row], tokens: str = "completion_tokens") -> dict[str, tuple[float, float]]:
    """Per label: (mean ``tokens`` per question, accuracy)."""
    return {
        label: (statistics.mean(r[tokens] for r in group), sum(r["correct"] for r in group) / len(group))
        for label, group in by_label(rows).items()
    }


def hull(labelled: dict[str, tuple[float, float]], prefix: str, from_zero: bool = True) -> list[tuple[float, float]]:
    """The concave hull of the points whose label starts with ``prefix``: any mix of them, and (with
    ``from_zero``, the baseline's advantage) of answering nothing at no cost."""
    chosen = [point for label, point in labelled.items() if label.startswith(prefix)]
    return concave_hull([(0.0, 0.0), *chosen] if from_zero else chosen)


def comparison(rows: Sequence[Row], sleep_tokens: dict[str, int]) -> dict[str, Any]:
    """The headline numbers on these rows (see ``measured``), each with a context-bootstrap interval
    over the draws where it is defined, and how many draws it was not (a memory that never reaches
    the baseline has no ratio)."""
    estimate = measured(rows, sleep_tokens)
    contexts = by_context(rows)
    names = sorted(contexts)
    rng = random.Random(0)
    draws: dict[str, list[float]] = defaultdict(list)
    undefined: dict[str, int] = defaultdict(int)
    for _ in range(BOOTSTRAP):
        chosen = [rng.choice(names) for _ in names]
        resampled = [row | {"context": f"{name}#{draw}"} for draw, name in enumerate(chosen) for row in contexts[name]]
        sleep = {f"{name}#{draw}": sleep_tokens.get(name, 0) for draw, name in enumerate(chosen)}
        for key, value in measured(resampled, sleep).items():
            if value == value:  # not NaN
                draws[key].append(float(value))
            else:
                undefined[key] += 1  # the memory never reached the baseline in this draw
    return {
        key: {"estimate": value, "interval": _percentiles(draws.get(key, [])), "undefined_draws": undefined[key]}
        for key, value in estimate.items()
    }


def measured(rows: Sequence[Row], sleep_tokens: dict[str, int]) -> dict[str, float]:
    """Point estimates:

    - ``best_none_accuracy``: the no-memory frontier's best accuracy, and the test-time (completion)
      tokens it takes there (``best_none_tokens``);
    - ``memory_tokens_to_best_none``: the memory frontier's tokens to reach that accuracy (NaN if it
      cannot), and ``test_time_ratio`` = best_none_tokens / that;
    - ``cost_ratio_at_q``: for the memory point of lowest cost per query at q questions per context
      (its compute tokens plus the context's sleep tokens / q), the no-memory frontier's compute
      tokens to match its accuracy, divided by that cost (above 1: the memory is cheaper).
    """
    completion = points(rows)
    none_curve = hull(completion, "none/")
    best_tokens, best_accuracy = max(none_curve, key=lambda point: (point[1], -point[0]))
    # the memory side gets no mix with answering nothing: only its own points and mixes of them
    memory_curve = hull(completion, "memory/", from_zero=False)
    memory_needed, note = tokens_to_reach(memory_curve, best_accuracy) if memory_curve else (0.0, UNREACHED)
    result = {
        "best_none_accuracy": best_accuracy,
        "best_none_tokens": best_tokens,
        "memory_tokens_to_best_none": memory_needed if note != UNREACHED else float("nan"),
    }
    reached = note != UNREACHED and memory_needed > 0
    result["test_time_ratio"] = best_tokens / memory_needed if reached else float("nan")
    compute = points(rows, "compute_tokens")
    none_compute = hull(compute, "none/")
    sleep_per_context = statistics.mean(sleep_tokens.get(name, 0) for name in by_context(rows)) if rows else 0.0
    for queries in QUERIES_PER_CONTEXT:
        result[f"cost_ratio_at_{queries}"] = _best_cost_ratio(compute, none_compute, sleep_per_context / queries)
    return result


def _best_cost_ratio(compute: dict[str, tuple[float, float]], baseline: list, sleep_share: float) -> float:
    ratios = []
    for label, (tokens, accuracy) in compute.items():
        if label.startswith("memory/") and accuracy > 0:
            needed, note = tokens_to_reach(baseline, accuracy)
            ratios.append(needed / (tokens + sleep_share) if note != UNREACHED else float("nan"))
    finite = [value for value in ratios if value == value]
    return max(finite) if finite else float("nan")


def graded_facts(lines: Sequence[str], quantities: Sequence[str]) -> dict[str, int]:
    """How many facts (``Q: ... A: ... → answer`` lines) there are, and how many are right
    (``is_known_quantity``)."""
    return graded_answers([line.rsplit("→", 1)[1].strip() for line in lines if "→" in line], quantities)


def graded_answers(answers: Sequence[str], quantities: Sequence[str]) -> dict[str, int]:
    """How many answers there are, and how many are right (``is_known_quantity``)."""
    return {"facts": len(answers), "right": sum(is_known_quantity(answer, quantities) for answer in answers)}


def is_known_quantity(answer: str, quantities: Sequence[str]) -> bool:
    """Whether ``answer`` is a quantity the context's generator knows: a fact's grade. Approximate
    both ways: a true answer the generator did not list counts as wrong, and a wrong answer that
    happens to equal another of its quantities counts as right.
    Example: ``is_known_quantity("1,200", ["1200", "7"]) is True``."""
    return _number(answer) in {Fraction(value) for value in quantities}


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def accuracy_intervals(rows: Sequence[Row]) -> dict[str, dict[str, Any]]:
    """Per label: accuracy, its context-bootstrap interval, mean completion and compute tokens."""
    return {label: _label_summary(group) for label, group in by_label(rows).items()}


def _label_summary(group: list[Row]) -> dict[str, Any]:
    contexts = by_context(group)
    names = sorted(contexts)

    def accuracy(chosen: list[str]) -> float:
        picked = [row for name in chosen for row in contexts[name]]
        return sum(row["correct"] for row in picked) / len(picked)

    return {
        "accuracy": accuracy(names),
        "interval": context_interval(names, accuracy),
        "questions": len(group),
        "completion_tokens": statistics.mean(row["completion_tokens"] for row in group),
        "compute_tokens": statistics.mean(row["compute_tokens"] for row in group),
    }


def context_interval(names: Sequence[str], statistic: Callable[[list[str]], float]) -> list[float] | None:
    """The 95% interval of ``statistic`` over contexts drawn with replacement (NaN draws left out).
    Example: ``context_interval(["a", "b"], lambda chosen: chosen.count("a") / len(chosen))``."""
    rng = random.Random(0)
    draws = [statistic([rng.choice(names) for _ in names]) for _ in range(BOOTSTRAP)]
    return _percentiles([draw for draw in draws if draw == draw])


def _percentiles(values: list[float], low: float = 0.025, high: float = 0.975) -> list[float] | None:
    if not values:
        return None
    ordered = sorted(values)
    pick: Callable[[float], float] = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return [round(pick(low), 4), round(pick(high), 4)]

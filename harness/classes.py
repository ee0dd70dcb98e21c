"""Question classes by prompt length: what the router can see of a question's kind before sampling.

A compute-optimal router spends differently on different kinds of question (Snell et al.): a
one-line sum settles after two agreeing samples, while a word problem the model rarely gets
right gains little from a sixteenth sample. The prompt's length is what the router sees of the
kind before any sample is drawn, so a policy may hold rules per prompt-length class.

The cuts are decision stumps on dev items: a cut is the prompt length that best separates the
items the first sample gets right from those it does not (the largest drop in Gini impurity),
kept where both sides have ``MIN_CLASS_ITEMS`` items and the impurity drops by
``MIN_CLASS_GAIN``. Cuts are made one at a time, each in the class where it separates most, up
to ``MAX_CUTS``: a mixed stream of one-line sums, short word problems and long ones gets three.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from harness.replay import StoredItem

MIN_CLASS_ITEMS = 40  # a question class is fitted on at least this many dev items
MIN_CLASS_GAIN = 0.02  # and its cut must separate easy from hard items at least this much (Gini)
MAX_CUTS = 2  # at most three classes, so each is fitted on a hundred-odd items of a 400-item dev set


def class_cuts(items: Sequence[StoredItem], max_cuts: int = MAX_CUTS) -> list[int]:
    """The prompt lengths at which to cut ``items`` into classes (each the longest prompt of the class
    below it), ascending.

    Example: one-line sums (prompts of 42 tokens, nearly always right) and word problems (90 tokens,
    rarely) are cut at 42; a stream of sums alone is not cut.
    """
    groups: list[list[StoredItem]] = [list(items)]
    cuts: list[int] = []
    for _ in range(max_cuts):
        found = [(stump, group) for group in groups if (stump := best_stump(group)) is not None]
        if not found:
            break
        (cut, _gain), group = max(found, key=lambda pair: pair[0][1])
        groups.remove(group)
        groups += [[i for i in group if i.prompt_length <= cut], [i for i in group if i.prompt_length > cut]]
        cuts.append(cut)
    return sorted(cuts)


def best_stump(items: Sequence[StoredItem]) -> tuple[int, float] | None:
    """The prompt length that best splits items the first sample gets right from those it does not,
    and the drop in Gini impurity (weighted by the items' share of all of them: a cut of a small
    class counts less); None where no split leaves both sides ``MIN_CLASS_ITEMS`` items and drops the
    impurity by ``MIN_CLASS_GAIN``."""
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
    return None if best is None else (best, best_gain * len(labelled))


def _gini(labels: Sequence[bool]) -> float:
    share = statistics.fmean(labels) if labels else 0.0
    return 2 * share * (1 - share)

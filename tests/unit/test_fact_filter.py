"""Fitting the sleep phase's fact filter: agreement counts and judge bars chosen by right-minus-wrong."""

from __future__ import annotations

from harness.fact_filter import FilterRule, fit_rule, net_difference, scored, stage_losses


def candidate(votes: int, right: bool, grounded: bool = True, judge: float | None = None) -> dict:
    return {"votes": votes, "samples": 4, "checked": grounded, "grounded": grounded, "judge": judge, "right": right}


def test_the_fit_keeps_the_agreement_count_with_the_most_right_minus_wrong_facts() -> None:
    # 4 votes: 3 right, 1 wrong; 3 votes: 1 right, 2 wrong; 2 votes: 2 wrong; ungrounded: right but never kept
    candidates = [candidate(4, True)] * 3 + [candidate(4, False)] + [candidate(3, True)] + [candidate(3, False)] * 2
    candidates += [candidate(2, False)] * 2 + [candidate(4, True, grounded=False)] * 5
    assert fit_rule(candidates, samples=4) == FilterRule(4)
    assert not FilterRule(1).keeps(candidate(4, True, grounded=False))
    assert FilterRule(8).keeps(candidate(4, True))  # asking more votes than samples asks all of them


def test_a_judge_bar_is_chosen_where_it_separates_what_agreement_cannot() -> None:
    right = [candidate(4, True, judge=score) for score in (0.8, 0.9, 0.7)]
    wrong = [candidate(4, False, judge=score) for score in (0.2, 0.3, 0.6, 0.4)]
    rule = fit_rule(right + wrong, samples=4)
    assert rule.judge_above is not None and 0.6 < rule.judge_above < 0.7
    assert rule.params() == {"agree": rule.agree, "judge_above": rule.judge_above}
    assert fit_rule([candidate(4, True, judge=0.5)] * 2, samples=4) == FilterRule(4)  # no bar helps: none


def test_scored_and_stage_losses_count_what_a_rule_keeps() -> None:
    contexts = {
        "a": [candidate(4, True, judge=0.9), candidate(1, False, judge=None)],
        "b": [candidate(3, False, judge=0.2), candidate(4, True, grounded=False)],
    }
    table = scored(FilterRule(3, judge_above=0.5), contexts)
    assert (table["kept"], table["right"], table["share_right"]) == (1, 1, 1.0)
    assert table["net_right_per_context"] == 0.5
    low, high = table["net_interval"]
    assert low <= 0.5 <= high
    losses = stage_losses(FilterRule(3, judge_above=0.5), [c for group in contexts.values() for c in group])
    assert [(row["stage"], row["left"], row["right"]) for row in losses] == [
        ("answered", 4, 2),
        ("agreed", 3, 2),
        ("checked", 2, 1),
        ("grounded", 2, 1),
        ("judged", 1, 1),
    ]


def test_the_net_difference_is_paired_on_the_same_contexts() -> None:
    contexts = {name: [candidate(2, True), candidate(4, False)] for name in "abc"}
    difference = net_difference(FilterRule(2), FilterRule(4), contexts)  # +1 right kept, the same wrong one
    assert difference["estimate"] == 1.0 and difference["interval"] == [1.0, 1.0]

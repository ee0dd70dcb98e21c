"""Sweep bookkeeping, report statistics and router fitting: pure logic over hand-made records."""

from __future__ import annotations

import statistics
from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError

from harness.classes import class_cuts
from harness.datasets import Problem
from harness.efficiency import compare, ratio, tokens_to_reach
from harness.fit import ACCEPT_SCORES, Replayer, accept_scores, fit_budget, fit_policy, fixed_grid, grid, spend_it_all
from harness.passes import SamplePass, affordable_prefix
from harness.replay import (
    Outcome,
    SearchPoint,
    StoredItem,
    baseline_table,
    best_of_n,
    best_of_n_within,
    item_of,
    replay,
    rescorer,
    sample_key,
    switch_label,
)
from harness.report import concave_hull, frontier, summarise, wilson_interval
from harness.results import ProbeFeatures, SweepResult
from harness.sweep import StrategySpec, SweepSpec, _derived_result
from orchestrator.core.costmodel import ModelShape, generation_cost
from orchestrator.core.errors import InvalidRequestError
from strategies.allocation import Allocation, Switch, first_accepted
from strategies.policy import Sampling, load_policy


def result(item: str, strategy: str, budget: int, correct: bool, tokens: int, **extra) -> SweepResult:
    return SweepResult(
        item_id=item,
        grade=0,
        strategy=strategy,
        strategy_name=extra.pop("name", strategy),
        params=extra.pop("params", {}),
        budget=budget,
        seed=0,
        correct=correct,
        answer="1",
        status="succeeded",
        compute_tokens=tokens,
        completion_tokens=tokens,
        flops=tokens * 1e8,
        kv_footprint_tokens=tokens,
        latency_s=tokens / 100,
        **extra,
    )


def probe(item: str, difficulty: float) -> ProbeFeatures:
    return ProbeFeatures(
        item_id=item,
        difficulty=difficulty,
        agreement=1 - difficulty,
        settled=False,
        compute_tokens=300,
        prompt_tokens=60,
    )


def test_wilson_interval_is_sane_at_the_edges() -> None:
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    for n in range(1, 60):  # float rounding must never put p outside its interval (error bars < 0)
        assert wilson_interval(n, n)[1] >= 1.0 and wilson_interval(0, n)[0] <= 0.0
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.237, abs=1e-3) and high == pytest.approx(0.763, abs=1e-3)


def test_frontier_keeps_only_points_no_cheaper_point_beats() -> None:
    assert frontier([(3, 0.5), (1, 0.2), (2, 0.1), (4, 0.5)]) == [(1, 0.2), (3, 0.5)]


def test_summary_rows_per_strategy_budget_and_bin() -> None:
    rows = summarise(
        [result("a", "direct", 256, True, 100), result("b", "direct", 256, False, 300)],
        {"a": probe("a", 0.1), "b": probe("b", 0.9)},
        edges=[0.5],
    )
    overall = next(r for r in rows if r.bin == "all")
    assert (overall.n, overall.accuracy, overall.mean_tokens, overall.latency_p95_s) == (2, 0.5, 200, 3.0)
    assert {(r.bin, r.accuracy) for r in rows if r.bin != "all"} == {("0", 1.0), ("1", 0.0)}


def test_budgets_must_be_powers_of_two_and_strategies_known() -> None:
    with pytest.raises(ValidationError, match="powers of two"):
        SweepSpec(name="s", strategies=[{"strategy": "direct"}], budgets=[300])
    with pytest.raises(ValidationError, match="unknown strategy 'nope'"):
        SweepSpec(name="s", strategies=[{"strategy": "nope"}])
    with pytest.raises(ValidationError, match="n"):
        SweepSpec(name="s", strategies=[{"strategy": "best_of_n", "params": {"n": 0}}])
    with pytest.raises(ValidationError, match="invalid identifier"):
        SweepSpec(name="has space", strategies=[{"strategy": "direct"}])
    assert SweepSpec(name="s", strategies=[{"strategy": "direct"}], budgets=[512, 256, 512]).budgets == [256, 512]


def test_labels_tell_params_apart() -> None:
    plain = StrategySpec(strategy="best_of_n")
    weighted = StrategySpec(strategy="best_of_n", params={"selection": "weighted", "n": 8})
    assert plain.label == "best_of_n" and weighted.label == 'best_of_n{n=8,selection="weighted"}'


def test_a_best_of_n_point_selects_from_the_longest_prefix_the_budget_affords() -> None:
    usage = {"prompt_tokens": 40, "cached_prompt_tokens": 0, "flops": 1000.0, "wall_time_s": 10.0}
    samples = [
        {"text": f"so {a}", "answer": a, "score": s, "tokens": 50}
        for a, s in [("3", 0.1), ("5", 0.9), ("5", 0.8), ("3", 0.2), ("3", 0.3)]
    ]
    sample_pass = SamplePass.model_validate({"usage": usage, "samples": samples})  # as stored, parsed once
    problem = Problem("q", "5", id="q1")
    config = StrategySpec(strategy="best_of_n")
    point = _derived_result(problem, config, 0, 200, sample_pass, "majority")  # 40 + 3 x 50 fits, 4 do not
    assert (point.params["n"], point.compute_tokens, point.correct, point.derived) == (3, 190, True, True)
    assert point.flops == pytest.approx(1000 * 190 / 290) and point.budget_exhausted == "tokens"
    everything = _derived_result(problem, config, 0, 512, sample_pass, "majority")
    assert (everything.params["n"], everything.correct, everything.budget_exhausted) == (5, False, None)
    weighted = _derived_result(problem, config, 0, 512, sample_pass, "weighted")
    assert weighted.correct  # 0.9 + 0.8 outweighs 0.1 + 0.2 + 0.3
    nothing = _derived_result(problem, config, 0, 64, sample_pass, "majority")
    assert (nothing.params["n"], nothing.correct) == (0, False)


def stored(item: str, answers: list[str | None], tokens: int = 100, right: str = "4", prompt: int = 40) -> StoredItem:
    return StoredItem(
        item, prompt, tuple(answers), (tokens,) * len(answers), (None,) * len(answers), frozenset({right})
    )


def test_replay_stops_when_the_vote_settles_and_counts_every_token() -> None:
    rule = Allocation(first_wave=2, wave=2, stop_share=0.75, stop_votes=3, give_up_after=None)
    item = stored("a", ["4", "5", "4", "4", "9", "9", "9", "9"])
    # 2 of 2 samples: 1 vote each; 4 samples: "4" holds 3 of 4, settled
    outcome = replay(rule, item, None, typical_tokens=100)
    assert (outcome.correct, outcome.samples, outcome.tokens) == (True, 4, 40 + 4 * 100)
    assert outcome.reasons[-1].startswith("settled")


def test_replay_gives_up_on_scattered_votes_and_respects_the_budget() -> None:
    scattered = stored("b", ["1", "2", "3", "4", "5", "6", "7", "8", "4", "4"])
    rule = Allocation(first_wave=4, wave=4, give_up_after=8, give_up_share=0.3)
    outcome = replay(rule, scattered, None, typical_tokens=100)
    assert outcome.samples == 8 and outcome.reasons[-1].startswith("unsettled")
    # 40 + 3 x 100 fit in 350 but a fourth sample does not: the first wave is sized to three
    small = replay(rule, scattered, 350, typical_tokens=100)
    assert (small.samples, small.tokens) == (3, 340)
    # 60 tokens left after the prompt: one sample is tried, capped at 60 as the meter caps it online;
    # the stored one is 100 long, so it is cut there, charged 60, and states no answer
    cut = replay(rule, scattered, 100, typical_tokens=100)
    assert (cut.correct, cut.tokens, cut.samples) == (False, 100, 1)
    # nothing left after the prompt: nothing drawn, the prompt charged
    nothing = Outcome(False, 40, 0, ("the budget cannot fit one sample",))
    assert replay(rule, scattered, 40, typical_tokens=100) == nothing


def test_best_of_n_baselines_follow_the_sweeps_derived_points() -> None:
    item = StoredItem("c", 40, ("5", "4", "4"), (100, 50, 300), (0.9, 0.1, 0.1), frozenset({"4"}))
    assert best_of_n(item, 1) == Outcome(False, 140, 1, ())
    assert best_of_n(item, 3).correct and best_of_n(item, 3, "argmax").correct is False
    assert best_of_n(item, 3, "weighted").correct is False  # 0.9 for "5" beats 0.2 for "4"
    assert best_of_n_within(item, 200).samples == 2 and best_of_n_within(item, 200).tokens == 190


def test_the_baseline_is_the_concave_hull_not_a_staircase() -> None:
    # a dip at (400, 0.42): the chord from (200, 0.4) to (800, 0.8) passes above it at 0.533, so
    # mixing N=1 and N=4 over questions beats N=2; chords between neighbours would charge 18% more
    points = [(0.0, 0.0), (200.0, 0.4), (400.0, 0.42), (800.0, 0.8), (1600.0, 0.8), (1200.0, 0.7)]
    hull = concave_hull(points)
    assert hull == [(0.0, 0.0), (200.0, 0.4), (800.0, 0.8)]
    assert tokens_to_reach(hull, 0.6) == (pytest.approx(500.0), "interpolated")
    assert tokens_to_reach(frontier(points), 0.6) == (pytest.approx(400 + 400 * 0.18 / 0.38), "interpolated")
    assert concave_hull([(0.0, 0.0), (1.0, 0.5), (2.0, 0.75)]) == [(0.0, 0.0), (1.0, 0.5), (2.0, 0.75)]  # concave
    assert concave_hull([(0.0, 0.0), (1.0, 0.5), (2.0, 1.0)]) == [(0.0, 0.0), (2.0, 1.0)]  # collinear: ends kept
    # the efficiency ratio reads the hull: 50 items, baseline columns at 200/400/800 tokens with
    # 20/21/40 right; auto gets 30 right at 250 tokens: 500 / 250, not 589 / 250
    correct = np.zeros((50, 3))
    correct[:20, 0], correct[:21, 1], correct[:40, 2] = 1, 1, 1
    tokens = np.tile([200.0, 400.0, 800.0], (50, 1))
    auto_correct, auto_tokens = (np.arange(50) < 30).astype(float), np.full(50, 250.0)
    assert ratio(auto_correct, auto_tokens, correct, tokens) == (pytest.approx(2.0), "interpolated")


def test_efficiency_interpolates_the_baseline_frontier() -> None:
    curve = [(200.0, 0.2), (400.0, 0.4), (800.0, 0.5)]
    assert tokens_to_reach(curve, 0.3) == (pytest.approx(300.0), "interpolated")
    assert tokens_to_reach(curve, 0.9) == (800.0, "at least")
    assert tokens_to_reach(curve, 0.1) == (200.0, "at most")


def test_the_ratio_is_paired_over_items_and_a_settling_rule_beats_majority() -> None:
    easy = [stored(f"e{i}", ["4"] * 8) for i in range(30)]
    hard = [stored(f"h{i}", ["5", "4", "6", "4", "7", "4", "4", "8"]) for i in range(10)]
    items = easy + hard
    settling = Allocation(first_wave=2, wave=2, max_samples=8, stop_share=1.0, stop_votes=2, give_up_after=None)
    auto = [replay(settling, item, None, 100) for item in items]
    # majority gets the hard items right from N = 4 on (440 tokens an item); the rule stops the
    # easy ones at 2 samples (240) and draws all 8 for the hard (840): 390 on average, all right
    assert sum(o.tokens for o in auto) / len(auto) == 390 and all(o.correct for o in auto)
    found = compare(auto, baseline_table(items))
    assert found["ratio"] == pytest.approx(440 / 390) and found["note"] == "interpolated"
    assert found["ci95"][0] <= found["ratio"] <= found["ci95"][1]


def test_the_fit_keeps_majority_unless_a_rule_surely_gains(tmp_path) -> None:
    easy = [stored(f"e{i}", ["4"] * 8) for i in range(30)]
    policy = fit_policy(easy, [512, 1024], Sampling(), "scripted", source="dev", version="t1")
    rule = policy.rule_for(1024).allocation
    assert replay(rule, easy[0], 1024, 100).samples < 8  # unanimous items: stopping early is a sure gain
    assert [r.min_tokens for r in policy.rules] == [0, 1024] and policy.fitted["items"] == 30
    path = tmp_path / "fitted.json"
    path.write_text(policy.model_dump_json())
    assert load_policy(str(path)).version == "t1"
    # early agreement misleads here: stopping at two agreeing samples saves 480 tokens an item but
    # loses every answer, and majority gets them right at 512 (5 samples) as at 1024, so near this
    # budget more tokens buy no answers: an answer is worth more than any saving
    misleading = [stored(f"m{i}", ["5", "5", *["4"] * 6], tokens=80) for i in range(30)]
    hasty = Allocation(first_wave=2, wave=2, max_samples=8, stop_share=1.0, stop_votes=2, give_up_after=None)
    assert fit_budget(misleading, 1024, Replayer(100), [hasty])[0] == spend_it_all(8)


def test_a_rule_switches_to_a_search_only_where_its_dev_points_pay() -> None:
    beam = Switch(strategy="beam_search", params={"width": 2}, min_tokens=256)
    label = switch_label(beam)
    # scattered votes that majority never turns right, and a search that gets them right for 300 tokens
    scattered = [
        replace(stored(f"s{i}", [str(n) for n in range(10, 18)], right="4"), searches={label: {256: point("4")}})
        for i in range(30)
    ]
    giving_up = Allocation(first_wave=4, wave=4, max_samples=8, give_up_after=4, give_up_share=0.5, switch=beam)
    outcome = replay(giving_up, scattered[0], 1024, 100)
    # 4 samples (40 + 400), then 1024 - 440 - 40 = 544 left affords the search's 256-budget point
    assert (outcome.correct, outcome.tokens, outcome.samples, outcome.reasons[-1]) == (True, 740, 4, "switched")
    unswitched = giving_up.model_copy(update={"switch": None})
    assert fit_budget(scattered, 1024, Replayer(100), [unswitched], [beam])[0].switch.strategy == "beam_search"
    # where the search is no better than the vote, the switch is not kept
    useless = [replace(item, searches={label: {256: point("9")}}) for item in scattered]
    assert fit_budget(useless, 1024, Replayer(100), [unswitched], [beam])[0].switch is None


def test_a_seeded_switch_keeps_the_samples_leader_unless_the_search_ties_it() -> None:
    beam = Switch(strategy="beam_search", params={"width": 2}, vote_with_samples=True)
    label = switch_label(beam)
    rule = Allocation(first_wave=4, max_samples=4, give_up_after=4, give_up_share=0.6, switch=beam)
    # the samples' leader 4 (2 of 4) is right; a search saying 9 (wrong) is outvoted, one saying 5 ties and wins
    item = stored("a", ["4", "4", "5", "6"], right="4")
    assert replay(rule, replace(item, searches={label: {256: point("9")}}), 1024, 100).correct
    assert not replay(rule, replace(item, searches={label: {256: point("5")}}), 1024, 100).correct
    alone = rule.model_copy(update={"switch": beam.model_copy(update={"vote_with_samples": False})})
    assert not replay(alone, replace(item, searches={label: {256: point("9")}}), 1024, 100).correct
    # the fit tries both: with a wrong search it never keeps the unseeded switch
    items = [replace(item, id=f"a{i}", searches={label: {256: point("9")}}) for i in range(30)]
    unswitched = rule.model_copy(update={"switch": None})
    found = fit_budget(items, 1024, Replayer(100), [unswitched], [alone.switch])[0]
    assert found.switch is None or found.switch.vote_with_samples


def test_replays_price_each_wave_in_eflops_as_one_request() -> None:
    shape = ModelShape(parameters=1_000_000, layers=2, query_heads=4, kv_heads=2, head_dim=8)
    item = replace(stored("a", ["5", "4", "4", "4"], prompt=40), prompt_length=50)  # 10 prompt tokens cached
    rule = Allocation(first_wave=2, wave=2, max_samples=4, stop_share=0.75, stop_votes=3, give_up_after=None)
    outcome = replay(rule, item, None, 100, shape)
    first = generation_cost(shape, 50, 10, [100, 100]).eflops
    second = generation_cost(shape, 50, 50, [100, 100]).eflops  # the prompt is cached by then
    assert outcome.samples == 4 and outcome.eflops == pytest.approx(first + second)
    assert best_of_n(item, 4, shape=shape).eflops == pytest.approx(generation_cost(shape, 50, 10, [100] * 4).eflops)
    assert replay(rule, item, None, 100).eflops is None  # without the shape, tokens only
    with pytest.raises(InvalidRequestError):
        Replayer(100, "eflops")
    easy = [replace(stored(f"e{i}", ["4"] * 8), prompt_length=40) for i in range(30)]
    policy = fit_policy(easy, [1024], Sampling(), "scripted", source="dev", version="t1", cost="eflops", shape=shape)
    assert policy.fitted["cost"] == "eflops" and policy.fitted["budgets"]["1024"]["dev_auto"]["eflops"] > 0
    assert replay(policy.rule_for(1024).allocation, easy[0], 1024, 100).samples < 8


def point(answer: str, tokens: int = 300) -> SearchPoint:
    return SearchPoint(correct=answer == "4", tokens=tokens, answer=answer)


def test_a_rule_that_accepts_a_checked_sample_answers_with_it_online_and_in_replay() -> None:
    # the first sample's arithmetic is wrong (0.05), the second checks (0.95): the votes tie 1-1,
    # so only the verifier's acceptance can answer after the first wave
    accepting = Allocation(first_wave=2, wave=2, stop_share=1.0, stop_votes=3, give_up_after=None, accept_score=0.9)
    item = replace(stored("a", ["5", "4", "5", "5", "5"]), scores=(0.05, 0.95, 0.05, 0.05, 0.05))
    outcome = replay(accepting, item, None, typical_tokens=100)
    assert (outcome.correct, outcome.samples, outcome.reasons[-1]) == (True, 2, "accepted: a sample answering 4 checks")
    voting = accepting.model_copy(update={"accept_score": None})
    assert replay(voting, item, None, typical_tokens=100).correct is False  # "5" wins the vote 4-1
    assert first_accepted(["5", None, "4"], [0.05, 0.99, 0.95], 0.9) == "4"  # a sample with no answer is not accepted
    assert any(rule.accept_score is not None and rule.first_wave == 1 for rule in grid(16))


def test_a_trained_verifiers_thresholds_come_from_its_dev_scores() -> None:
    # a reward model whose scores never reach the calculator's 0.75: thresholds at its own
    # scale (the values above which half, 30% and 15% of the samples lie) join the grid
    scores = [i / 100 * 0.4 for i in range(100)]  # evenly over [0, 0.4)
    items = [replace(stored(f"i{k}", ["4"] * 10), scores=tuple(scores[k * 10 : k * 10 + 10])) for k in range(10)]
    found = accept_scores(items)
    assert set(ACCEPT_SCORES) <= set(found)
    assert [round(score, 2) for score in found if score not in ACCEPT_SCORES] == [0.2, 0.28, 0.34]
    assert accept_scores([stored("x", ["4", "5"])]) == ACCEPT_SCORES  # no stored scores: the calculator's
    rules = grid(8, found)
    assert {rule.accept_score for rule in rules if rule.accept_score is not None} == set(found)


def test_question_classes_split_by_prompt_length_where_it_separates_easy_from_hard() -> None:
    easy = [replace(stored(f"e{i}", ["4"] * 8), prompt_length=30 + i % 5) for i in range(60)]
    hard = [replace(stored(f"h{i}", ["5", *["4"] * 7]), prompt_length=90 + i % 7) for i in range(60)]
    assert class_cuts(easy + hard, max_cuts=1) == [34]  # the longest easy prompt
    assert class_cuts(easy, max_cuts=1) == []  # nothing to separate
    few = [spend_it_all(8), *fixed_grid(8)]
    policy = fit_policy(easy + hard, [1024], Sampling(), "scripted", "dev", version="t", classes=True, candidates=few)
    [short] = policy.classes
    assert short.max_prompt_tokens == 34 and policy.fitted["classes"][0]["items"] == 60
    assert policy.rule_for(1024, 30) == short.rules[0] and policy.rule_for(1024, 95) == policy.rules[0]
    assert policy.rule_for(1024) == policy.rules[0]  # no prompt length: the longest class's rules


def test_a_stream_is_cut_again_where_a_class_still_mixes_easy_and_hard() -> None:
    def items(prefix: str, count: int, length: int, answers: list[str]) -> list[StoredItem]:
        return [replace(stored(f"{prefix}{i}", answers), prompt_length=length + i % 3) for i in range(count)]

    sums = items("s", 60, 20, ["4"] * 8)  # right from the first sample
    words = items("w", 60, 50, ["5", *["4"] * 7])  # wrong first, then settled
    long_right = items("r", 50, 90, ["4"] * 8)
    assert class_cuts(sums + words) == [22]
    assert class_cuts(sums + words + long_right) == [22, 52]  # the long ones are easy again
    assert class_cuts(sums + words + long_right, max_cuts=1) == [22]
    few = [spend_it_all(8), *fixed_grid(8)]
    policy = fit_policy(
        sums + words + long_right, [1024], Sampling(), "scripted", "dev", version="t", classes=True, candidates=few
    )
    assert [c.max_prompt_tokens for c in policy.classes] == [22, 52]
    assert [c["items"] for c in policy.fitted["classes"]] == [60, 60, 50]


def test_every_class_is_fitted_at_its_streams_price_so_hopeless_votes_get_one_sample() -> None:
    # medium questions: the first sample is wrong and majority is right from three samples on
    medium = [replace(stored(f"m{i}", ["5", "4", *["4"] * 6]), prompt_length=30) for i in range(60)]
    # long questions: the first sample's answer is majority's at every N (ties go to the first seen),
    # right for half of them; on a tenth more samples turn a wrong first answer right
    scattered = [str(n) for n in range(5, 12)]
    hard = [replace(stored(f"h{i}", ["4", *scattered]), prompt_length=90) for i in range(30)]
    hard += [replace(stored(f"w{i}", ["12", *scattered]), prompt_length=90) for i in range(24)]
    hard += [replace(stored(f"f{i}", ["5", "4", "4", *scattered[:5]]), prompt_length=90) for i in range(6)]
    few = fixed_grid(8)  # and majority over all 8, which the fit always tries
    policy = fit_policy(medium + hard, [512], Sampling(), "scripted", "dev", version="t", classes=True, candidates=few)
    [short] = policy.classes
    assert short.max_prompt_tokens == 30
    # priced at what the stream pays for an answer, one sample is worth the tenth it loses on the long
    # questions; priced at their own votes' rate (0.1 answer for 300 tokens) it would not be
    long_rule = policy.rules[0].allocation
    assert statistics.fmean(replay(long_rule, item, 512, 100).samples for item in hard) == 1
    assert policy.fitted["prices"]["512"] < 1 / (0.1 / 300)
    assert replay(short.rules[0].allocation, medium[0], 512, 100).correct
    assert any(rule.max_samples == 1 for rule in grid(16))  # plain one-sample best-of-n is a candidate


def test_the_affordable_prefix_is_the_longest_that_fits_after_the_prompt() -> None:
    assert affordable_prefix(40, [100, 90, 300], 250) == (2, 230)
    assert affordable_prefix(40, [100, 90], 1000) == (2, 230)  # everything fits
    assert affordable_prefix(40, [100], 139) == (0, 40)  # not even one sample: the prompt alone


def test_stored_samples_are_scored_again_offline_by_a_free_verifier() -> None:
    problem = Problem("What is 3 x 4?", "12", id="p")
    sample_pass = SamplePass.model_validate(
        {
            "usage": {"prompt_tokens": 20, "cached_prompt_tokens": 0},
            "samples": [
                {"answer": "12", "text": "3 x 4 = 12.\n\nThe answer is 12.", "tokens": 10, "score": 0.6},
                {"answer": "13", "text": "3 x 4 = 13.\n\nThe answer is 13.", "tokens": 10, "score": 0.05},
            ],
        }
    )
    assert item_of(problem, sample_pass).scores == (0.6, 0.05)
    assert item_of(problem, sample_pass, rescorer("arith_checked")).scores == (0.95, 0.05)
    with pytest.raises(InvalidRequestError, match="scored again only by"):
        rescorer("self_judge")
    # a served verifier's earlier scores, looked up by question and text; a sample it did not score is an error
    texts = [sample.text for sample in sample_pass.samples]
    table = {sample_key(problem.question, texts[0]): 0.9, sample_key(problem.question, texts[1]): 0.2}
    assert item_of(problem, sample_pass, rescorer("orm", table)).scores == (0.9, 0.2)
    with pytest.raises(InvalidRequestError, match="no orm score"):
        item_of(problem, sample_pass, rescorer("orm", {sample_key(problem.question, texts[0]): 0.9}))
    with pytest.raises(InvalidRequestError, match="needs the verifier"):
        rescorer(None, table)

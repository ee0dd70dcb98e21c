"""Sweep bookkeeping, report statistics and router fitting: pure logic over hand-made records."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.datasets import Problem
from harness.fit import best_per_budget, efficiency, fit_policy, quantile_edges
from harness.report import frontier, summarise, wilson_interval
from harness.results import ProbeFeatures, SweepResult
from harness.sweep import StrategySpec, SweepSpec, _derived_result
from strategies.auto import load_policy


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
    sample_pass = {"usage": usage, "samples": samples, "error": None}
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


def test_quantile_edges_split_evenly_and_drop_duplicates() -> None:
    assert quantile_edges([0.1, 0.2, 0.3, 0.4], 2) == [0.3]
    assert quantile_edges([0.5] * 10, 3) == []
    assert quantile_edges([0.0, 0.0, 0.5, 1.0, 1.0, 1.0], 3) == [0.5, 1.0]


def test_the_best_configuration_wins_and_ties_go_to_the_cheaper() -> None:
    results = [
        result("a", "direct", 256, True, 100),
        result("a", "best_of_n", 256, True, 250),
        result("a", "beam_search", 512, False, 400),
        result("a", "best_of_n", 512, True, 500),
    ]
    best = best_per_budget(results)
    assert best[256].strategy == "direct" and best[512].strategy == "best_of_n"


def test_a_fitted_policy_routes_each_bin_to_its_winner_and_auto_loads_it(tmp_path) -> None:
    easy, hard = ["e1", "e2"], ["h1", "h2"]
    results = [result(i, "direct", 512, True, 80) for i in easy]
    results += [result(i, "direct", 512, False, 80) for i in hard]
    results += [
        result(i, "best_of_n{n=8}", 512, True, 480, name="best_of_n", params={"n": 6}, derived=True) for i in hard
    ]
    results += [
        result(i, "best_of_n{n=8}", 512, False, 480, name="best_of_n", params={"n": 6}, derived=True) for i in easy
    ]
    probes = {i: probe(i, 0.1) for i in easy} | {i: probe(i, 0.8) for i in hard}
    policy = fit_policy(results, probes, bins=2, version="t1", source="dev")
    assert policy.difficulty_bins == [0.8]
    assert policy.choose(0.1, 10_000)[1].strategy == "direct"
    hard_choice = policy.choose(0.9, 10_000)[1]
    # at 512 the probe's 4 samples get (512 - 60) // 2 // 4 = 56 tokens each; its 240 tokens unlimited
    # are 60 a sample, so it costs 60 + 4 x 56 = 284, and 512 - 284 less a 64-token margin is 164
    assert (hard_choice.strategy, hard_choice.params["n"], hard_choice.min_tokens) == ("best_of_n", 6, 164)
    path = tmp_path / "fitted.json"
    path.write_text(policy.model_dump_json())
    assert load_policy(str(path)).version == "t1"


def test_a_budget_too_small_for_the_probe_keeps_all_of_it_for_the_route() -> None:
    results = [result("a", "direct", 32, True, 30), result("a", "best_of_n", 64, True, 60)]
    results += [result("a", "direct", 64, False, 30)]
    fitted = fit_policy(results, {"a": probe("a", 0.5)}, bins=1)
    # a 60-token probe prompt leaves nothing for samples at 32 or 64: auto skips the probe and routes with
    # the whole budget, so only the margin (budget // 8) comes off each threshold
    entries = [(e.min_tokens, e.strategy, e.budget) for e in fitted.table["0"]]
    assert entries == [(28, "direct", 32), (56, "best_of_n", 64)]


def test_efficiency_interpolates_the_baseline_frontier() -> None:
    baseline = {256: (0.2, 200.0), 512: (0.4, 400.0), 1024: (0.5, 800.0)}
    [row] = efficiency({256: (0.3, 150.0)}, baseline)
    assert row.baseline_tokens_to_match == pytest.approx(300.0) and row.ratio == pytest.approx(2.0)
    [never] = efficiency({256: (0.9, 200.0)}, baseline)
    assert never.note.startswith("at least") and never.ratio == pytest.approx(4.0)
    [cheap] = efficiency({256: (0.1, 100.0)}, baseline)
    assert cheap.note.startswith("at most") and cheap.ratio == pytest.approx(2.0)

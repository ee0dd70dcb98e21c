"""Strategy bookkeeping on the scripted backend: voting, early stop, tree traces, params."""

from __future__ import annotations

import pytest

from orchestrator.core.backends.base import SamplingSettings
from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.errors import InvalidRequestError
from orchestrator.core.session import Session
from strategies import REGISTRY, get_strategy
from strategies.deepconf import online_threshold
from strategies.selection import (
    Sample,
    choose,
    leader_stays_probability,
    most_confident,
    tally,
    vote_is_decided,
    window_agrees,
)
from tests.sessions import new_session


def context(script, budget: Budget | None = None) -> tuple[Session, ScriptedBackend]:
    backend = ScriptedBackend(script)
    return new_session(backend, BudgetMeter(budget or Budget())), backend


def test_vote_rules() -> None:
    voted = [Sample(text=str(a), answer=a, score=0.5) for a in ["12", "12", None, "13"]]
    assert tally(voted) == {"12": 2, "13": 1}
    assert tally(voted, "weighted") == {"12": 1.0, "13": 0.5}
    assert choose(voted, "majority").answer == "12" and choose([], "argmax").answer is None
    assert vote_is_decided({"12": 5, "13": 1}, remaining=3)
    assert not vote_is_decided({"12": 5, "13": 2}, remaining=3)
    assert not vote_is_decided({}, remaining=0)


async def test_early_stop_saves_samples_when_every_sample_agrees() -> None:
    session, backend = context(lambda prompt, s: ["2 + 2 = 4. The answer is 4."] * s.n)
    strategy = get_strategy("best_of_n")
    result = await strategy.run("2+2?", session, strategy.parse_params({"n": 16, "wave_size": 2}))
    assert result.answer == "4"
    assert result.trace["samples_drawn"] == 10  # 10 votes to 0 cannot be caught by the 6 left
    assert sum(call[1].n for call in backend.calls) == 10


async def test_without_early_stop_all_samples_are_drawn_in_one_request() -> None:
    session, backend = context(lambda prompt, s: ["The answer is 4."] * s.n)
    strategy = get_strategy("best_of_n")
    result = await strategy.run("2+2?", session, strategy.parse_params({"n": 16, "adaptive": False}))
    assert result.trace["samples_drawn"] == 16 and len(backend.calls) == 1


async def test_weighted_vote_and_argmax_follow_the_verifier() -> None:
    texts = ["3 x 4 = 13. The answer is 13.", "3 x 4 = 13. The answer is 13.", "3 x 4 = 12. The answer is 12."]
    strategy = get_strategy("best_of_n")
    # majority counts heads; weighted sums verifier scores (2 x 0.05 for 13 loses to 0.95 for 12)
    for selection, expected in [("majority", "13"), ("weighted", "12"), ("argmax", "12")]:
        session, _ = context(lambda prompt, s: texts[: s.n])
        params = strategy.parse_params({"n": 3, "selection": selection, "adaptive": False})
        result = await strategy.run("3x4?", session, params)
        assert result.answer == expected, selection


def make_stepper():
    """Two steps then an answer; every other second step is wrong (11 instead of 10)."""
    second_steps = 0

    def stepper(prompt: str, sampling: SamplingSettings) -> list[str]:
        nonlocal second_steps
        depth = prompt.count("\n\n")
        if depth == 0:
            return ["3 x 4 = 12\n\n"] * sampling.n
        if depth == 1:
            texts = []
            for _ in range(sampling.n):
                second_steps += 1
                texts.append("12 - 2 = 10\n\n" if second_steps % 2 else "12 - 2 = 11\n\n")
            return texts
        return ["The answer is 10."] * sampling.n

    return stepper


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("beam_search", {"width": 2, "samples_per_beam": 2}),
        ("dvts", {"width": 2, "samples_per_beam": 2}),
        ("rebase", {"width": 4}),
    ],
)
async def test_tree_search_traces_add_up(name: str, params: dict) -> None:
    session, backend = context(make_stepper())
    strategy = get_strategy(name)
    result = await strategy.run("Tom has 3 boxes of 4 apples and eats 2.", session, strategy.parse_params(params))
    assert result.answer == "10" and not result.best_so_far
    nodes = result.trace["tree"]["nodes"]
    usage = session.meter.snapshot()
    assert sum(node["tokens"] for node in nodes) == usage.completion_tokens
    assert usage.kv_footprint_tokens == sum(result.trace["tree"]["kv_footprint_per_depth"]) > 0
    assert {call[2] for call in backend.calls} == {session.tree_id}  # one tree id: one replica
    wrong = [n for n in nodes if "11" in n["step"]]
    assert wrong and all(n["status"] in {"pruned", "live"} or n["score"] < 0.5 for n in wrong)


async def test_beam_search_runs_until_n_leaves_finish_not_only_the_first_hasty_one() -> None:
    def stepper(prompt: str, sampling: SamplingSettings) -> list[str]:
        if prompt.count("\n\n") == 0:  # the first step: a hasty wrong answer, and a careful step
            return ["3 x 4 = 13. The answer is 13.", "3 x 4 = 12\n\n"][: sampling.n]
        return ["12 - 2 = 10. The answer is 10."] * sampling.n

    strategy = get_strategy("beam_search")
    params = strategy.parse_params({"width": 1, "samples_per_beam": 2})
    result = await strategy.run("Tom has 3 boxes of 4 apples and eats 2.", context(stepper)[0], params)
    assert result.answer == "10"  # 1 x 2 leaves finished, the better one chosen


async def test_tree_search_out_of_budget_returns_best_so_far() -> None:
    session, _ = context(make_stepper(), Budget(max_tokens=40))
    strategy = get_strategy("rebase")
    result = await strategy.run("q", session, strategy.parse_params({"width": 4}))
    assert result.best_so_far
    assert session.meter.usage.completion_tokens <= 40


def test_every_strategy_publishes_a_params_schema() -> None:
    assert {"direct", "best_of_n", "beam_search", "dvts", "rebase", "ets"} <= set(REGISTRY)
    for strategy in REGISTRY.values():
        schema = strategy.params_schema()
        assert set(schema["properties"]) == set(strategy.params_model.model_fields)  # every param published
        assert schema.get("additionalProperties") is False  # a misspelt param is refused, not ignored
        assert strategy.description


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("beam_search", {"width": 0}, "width"),
        ("rebase", {"verifier": "oracle"}, "verifier"),
        ("best_of_n", {"n": -1}, "n"),
        ("ets", {"lambda_cost": -1}, "lambda_cost"),
        ("dvts", {"bogus": 1}, "bogus"),
        ("best_of_n", {"n": 4, "temperature": 0}, "temperature"),
    ],
)
def test_bad_params_get_a_clear_error(name: str, params: dict, field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field):
        get_strategy(name).parse_params(params)


def test_adaptive_consistency_and_esc_stop_rules() -> None:
    # Beta(5, 1) > 1/2 with probability 1 - 0.5**5 = 0.969: four agreeing samples settle it at 0.95
    assert leader_stays_probability({"12": 4}) == pytest.approx(1 - 0.5**5, abs=0.01)
    assert leader_stays_probability({"12": 2, "13": 2}) == pytest.approx(0.5, abs=0.03)
    assert leader_stays_probability({}) == 0.0
    same = [Sample(text="", answer="7")] * 3
    assert window_agrees(same) and not window_agrees([*same, Sample(text="", answer=None)])


@pytest.mark.parametrize(("stop_rule", "waves_if_unanimous"), [("esc", 1), ("adaptive_consistency", 1), ("margin", 2)])
async def test_a_unanimous_vote_stops_by_each_rule(stop_rule: str, waves_if_unanimous: int) -> None:
    backend = ScriptedBackend(lambda prompt, sampling: ["3 + 4 = 7. The answer is 7."] * sampling.n)
    strategy = get_strategy("best_of_n")
    params = strategy.parse_params({"n": 8, "wave_size": 4, "stop_rule": stop_rule, "logprobs": 0})
    result = await strategy.run("3 + 4?", new_session(backend), params)
    assert len(result.trace["waves"]) == waves_if_unanimous  # margin needs 5 of 8 ahead: two waves


def test_deepconf_offline_keeps_the_most_confident_share_in_drawing_order() -> None:
    samples = [Sample(text=str(i), answer=str(i), confidence={"lowest_group": c}) for i, c in enumerate([3, 9, 1, 7])]
    assert [s.answer for s in most_confident(samples, 0.5, "lowest_group")] == ["1", "3"]
    assert [s.answer for s in most_confident(samples, 0.1, "lowest_group")] == ["1"]  # at least one
    unmeasured = [Sample(text="x", answer="x"), *samples[:1]]
    assert [s.answer for s in most_confident(unmeasured, 0.5, "lowest_group")] == ["0"]


def test_confidence_verifiers_need_logprobs() -> None:
    strategy = get_strategy("best_of_n")
    with pytest.raises(InvalidRequestError, match="logprobs"):
        strategy.parse_params({"keep_top": 0.1, "logprobs": 0})
    with pytest.raises(InvalidRequestError, match="logprobs"):
        strategy.parse_params({"verifier": "self_certainty", "selection": "weighted", "logprobs": 0})


def test_the_online_threshold_is_what_the_most_confident_share_of_the_warm_up_reaches() -> None:
    warmup = [Sample(text="", answer="1", confidence={"lowest_group": float(c)}) for c in range(1, 11)]
    assert online_threshold(warmup, 0.1) == 10.0 and online_threshold(warmup, 0.9) == 2.0
    assert online_threshold([Sample(text="", answer="1")], 0.5) is None


SURE, UNSURE = "3 + 4 = 7, so the answer is 7.", "Hmm, maybe 3 + 4 = 5? The answer is 5."


async def test_deepconf_online_stops_unsure_traces_in_the_engine_and_they_do_not_vote() -> None:
    texts = iter([SURE, UNSURE] * 40)
    backend = ScriptedBackend(
        lambda prompt, sampling: [next(texts) for _ in range(sampling.n)],
        token_logprobs=lambda text: (-0.1, -8.0) if text == SURE else (-1.6, -1.6),  # C = 6.5 vs 1.6
    )
    strategy = get_strategy("best_of_n")
    params = strategy.parse_params({"n": 12, "wave_size": 4, "online_keep": 0.5, "logprobs": 5})
    session = new_session(backend)
    result = await strategy.run("3 + 4?", session, params)
    samples = [Sample.model_validate(s) for s in result.trace["samples"]]
    warmup, later = samples[:4], samples[4:]
    assert not any(s.stopped for s in warmup)  # the warm-up is decoded whole
    stopped = [s for s in later if s.stopped]
    assert stopped and all(s.tokens == 16 and s.text.startswith("Hmm") for s in stopped)  # cut after one window
    assert len(backend.aborted) == len(stopped)
    assert result.answer == "7" and result.trace["voters"] == len(samples) - len(stopped)
    full_cost = sum(len(SURE if s.text.startswith("3") else UNSURE) for s in samples)
    assert session.meter.usage.completion_tokens < full_cost  # the stopped traces' tail was never decoded


async def test_step_search_can_rank_partial_paths_by_their_own_token_confidence() -> None:
    backend = ScriptedBackend(
        make_stepper(),
        # the wrong second step is written unsure, everything else confidently
        token_logprobs=lambda text: (-1.6, -1.6) if "= 11" in text else (-0.1, -8.0),
    )
    strategy = get_strategy("beam_search")
    params = strategy.parse_params(
        {"width": 1, "samples_per_beam": 2, "verifier": "confidence_mean", "logprobs": 5, "max_steps": 4}
    )
    result = await strategy.run(
        "Tom has 3 boxes of 4 apples and eats 2. How many are left?", new_session(backend), params
    )
    nodes = {n["id"]: n for n in result.trace["tree"]["nodes"]}
    unsure = [n for n in nodes.values() if "= 11" in n["step"]]
    sure = [n for n in nodes.values() if n["depth"] == 2 and "= 10" in n["step"]]
    assert unsure and sure and max(n["score"] for n in unsure) < min(n["score"] for n in sure)
    assert all(n["status"] == "pruned" for n in unsure) and result.answer == "10"
    with pytest.raises(InvalidRequestError, match="logprobs"):
        strategy.parse_params({"verifier": "confidence_mean"})


async def test_streamed_stop_accepts_the_first_checked_sample_and_aborts_the_rest_in_the_engine() -> None:
    # shortest first: a wrong calculation (scored 0.05), then a checked one (0.95), then long ones
    texts = iter(["2 + 2 = 5. The answer is 5.", "2 + 2 = 4, so the answer is 4.", *["Let me think. " * 30] * 6])
    backend = ScriptedBackend(lambda prompt, sampling: [next(texts)], token_delay_s=0.002)
    strategy = get_strategy("best_of_n")
    params = strategy.parse_params({"n": 8, "streamed": True, "accept_score": 0.9, "verifier": "arith_steps"})
    session = new_session(backend)
    result = await strategy.run("2 + 2?", session, params)
    assert result.answer == "4" and result.trace["streamed"] == {
        "in_flight": 8,
        "finished": 2,
        "aborted": 6,
        "accepted": True,
    }
    assert len(backend.aborted) == 6 and len(backend.calls) == 8  # fired at once, the long ones cut
    long_text = len("Let me think. " * 30)
    assert 2 * 27 < session.meter.usage.completion_tokens < 2 * 27 + 6 * long_text  # their heads are charged


async def test_streamed_stop_refills_its_window_and_stops_once_the_vote_is_decided() -> None:
    backend = ScriptedBackend(lambda prompt, sampling: ["2 + 2 = 4. The answer is 4."], token_delay_s=0.001)
    strategy = get_strategy("best_of_n")
    params = strategy.parse_params({"n": 8, "streamed": True, "in_flight": 2})
    result = await strategy.run("2 + 2?", new_session(backend), params)
    # margin: 5 votes to 0 with 3 left cannot be caught; two in flight, so at most one more started
    # (it may finish at the same token as the fifth: equal lengths)
    assert result.answer == "4" and result.trace["streamed"]["finished"] in (5, 6)
    assert len(backend.calls) <= 7 and params.parallel_streams() == 2
    with pytest.raises(InvalidRequestError, match="need streamed"):
        strategy.parse_params({"n": 8, "accept_score": 0.9})

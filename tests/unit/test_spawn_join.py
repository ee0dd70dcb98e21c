"""spawn/join bookkeeping on the scripted backend: protocol, concurrency, failures, limits,
the Countdown split, and token accounting. (Generation itself is tested on the engine.)"""

from __future__ import annotations

import anyio
import pytest

from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.errors import BackendUnavailableError
from strategies import get_strategy
from strategies.countdown_split import first_steps, parse_countdown
from strategies.spawn_join import CHILD_PROMPT, join_block, parse_spawn
from tests.sessions import new_session
from verifiers.outcome import countdown_correct

SPAWN = 'Two parts. <spawn>["What is 3 + 4?", "What is 2 + 3?"]</spawn>'


def parent_and_children(parent_first: str = SPAWN, child=None):
    """A parent that spawns (or writes ``parent_first``) and then answers from the join."""

    def script(prompt: str, sampling) -> list[str]:
        if CHILD_PROMPT in prompt:
            return [child(prompt) if child else ("3 + 4 = 7. Result: 7" if "3 + 4" in prompt else "Result: 5")]
        if "<join>\n1." in prompt:  # the parent resumes after the join
            return ["So 7 + 5 = 12. The answer is 12."]
        return [parent_first]

    return script


async def run(script, params: dict | None = None, budget: Budget | None = None, delay=0.0):
    backend = ScriptedBackend(script, delay_s=delay)
    meter = BudgetMeter(budget or Budget())
    strategy = get_strategy("spawn_join")
    result = await strategy.run(
        "What is (3 + 4) + (2 + 3)?", new_session(backend, meter), strategy.parse_params(params or {})
    )
    return result, meter, backend


def test_spawn_blocks_parse_strictly() -> None:
    assert parse_spawn('x <spawn>["2+2", "3*3"]</spawn>') == ["2+2", "3*3"]
    assert parse_spawn("x <spawn>[2, 3]</spawn>") is None
    assert parse_spawn("x <spawn>not json</spawn>") is None
    assert parse_spawn("x <spawn>[]</spawn>") is None
    assert parse_spawn("no block") is None
    assert join_block(["a", "b"], ["1", None]) == "<join>\n1. a => 1\n2. b => no result\n</join>\n"


async def test_children_run_concurrently_and_their_results_are_joined() -> None:
    slow_children = lambda prompt: 0.3 if CHILD_PROMPT in prompt else 0.0  # noqa: E731
    result, meter, backend = await run(parent_and_children(), delay=slow_children)
    assert result.answer == "12"
    tree = result.trace["threads"]
    [children] = tree["rounds"]
    assert [c["result"] for c in children] == ["7", "5"] and tree["protocol"] == "spawned"
    assert children[0]["start_s"] < children[1]["end_s"] and children[1]["start_s"] < children[0]["end_s"]  # overlap
    resumed = backend.calls[-1][0]
    reply = resumed.split("<assistant>")[-1]
    assert reply == "Two parts. <join>\n1. What is 3 + 4? => 7\n2. What is 2 + 3? => 5\n</join>\n"
    assert {call[2] for call in backend.calls} == {backend.calls[0][2]}  # one tree id: one replica
    assert result.trace["thread_tokens"] == meter.usage.completion_tokens
    longest_child = max(c["tokens"] for c in children)
    assert meter.usage.critical_path_tokens == tree["tokens"] + longest_child < meter.usage.completion_tokens


async def test_serial_mode_runs_the_same_work_one_child_after_another() -> None:
    slow_children = lambda prompt: 0.3 if CHILD_PROMPT in prompt else 0.0  # noqa: E731
    result, _, _ = await run(parent_and_children(), {"concurrent": False}, delay=slow_children)
    assert result.answer == "12"
    tree = result.trace["threads"]
    [children] = tree["rounds"]
    assert children[0]["end_s"] <= children[1]["start_s"]
    assert result.trace["critical_path_tokens"] == tree["tokens"] + sum(c["tokens"] for c in children)


async def test_a_failing_child_is_no_result_and_the_parent_goes_on() -> None:
    def child(prompt: str) -> str:
        if "2 + 3" in prompt:
            raise BackendUnavailableError("replica down")
        return "Result: 7"

    result, _, backend = await run(parent_and_children(child=child))
    [children] = result.trace["threads"]["rounds"]
    assert [c["status"] for c in children] == ["done", "failed: backend_unavailable"]
    assert "2. What is 2 + 3? => no result" in backend.calls[-1][0] and result.answer == "12"


async def test_children_out_of_budget_are_no_result_and_nothing_hangs() -> None:
    # Chars are tokens here: the parent's first turn leaves ~250 of 700 tokens; the first child
    # to be admitted reserves them all, so its sibling is refused and the parent cannot resume.
    result, meter, _ = await run(parent_and_children(child=lambda prompt: "x" * 2000), budget=Budget(max_tokens=700))
    [children] = result.trace["threads"]["rounds"]
    assert "out of budget" in {c["status"] for c in children}
    assert meter.usage.budget_exhausted == "tokens" and result.best_so_far
    assert result.trace["threads"]["status"] == "out of budget"


async def test_a_parent_that_ignores_the_protocol_finishes_alone() -> None:
    result, _, backend = await run(parent_and_children(parent_first="3 + 4 = 7, 2 + 3 = 5. The answer is 12."))
    assert result.answer == "12" and result.trace["protocol"] == "no spawn" and len(backend.calls) == 1


async def test_a_malformed_spawn_block_is_cut_and_the_thread_continues() -> None:
    calls = []

    def script(prompt: str, sampling) -> list[str]:
        calls.append(prompt)
        return ["Split: <spawn>[oops</spawn>"] if len(calls) == 1 else ["I will do it myself. The answer is 12."]

    result, _, _ = await run(script)
    assert result.answer == "12" and result.trace["protocol"].startswith("malformed")
    assert "<spawn>" not in calls[1].split("<assistant>")[-1] and result.trace["threads"]["rounds"] == []


async def test_fan_out_is_capped() -> None:
    many = "<spawn>" + str([f"What is {i} + 1?" for i in range(9)]).replace("'", '"') + "</spawn>"
    result, _, _ = await run(parent_and_children(parent_first=many), {"max_children": 3})
    [children] = result.trace["threads"]["rounds"]
    assert len(children) == 3


async def test_a_cancelled_parent_cancels_its_children() -> None:
    slow_children = lambda prompt: 30.0 if CHILD_PROMPT in prompt else 0.0  # noqa: E731
    backend = ScriptedBackend(parent_and_children(), delay_s=slow_children)
    strategy = get_strategy("spawn_join")
    session = new_session(backend, BudgetMeter(Budget()))
    children = lambda: [p for p in backend.running.values() if CHILD_PROMPT in p]  # noqa: E731
    with anyio.fail_after(10):  # only if cancelling the parent does not end it
        async with anyio.create_task_group() as group:
            group.start_soon(strategy.run, "What is (3 + 4) + (2 + 3)?", session, strategy.parse_params({}))
            while len(children()) < 2:  # noqa: ASYNC110 (polls the backend's record; both children generating)
                await anyio.sleep(0.01)
            group.cancel_scope.cancel()  # the caller gives up on the parent
    assert children() == []  # no child generation outlives its parent
    assert len([p for p, *_ in backend.calls if CHILD_PROMPT in p]) == 2


@pytest.mark.parametrize(
    "question",
    [
        "Using all the numbers 41, 12, 19, 25, create an expression that equals 316.\nYou can only use each once.",
        "Find a way to make 316 using all of these numbers: 41, 12, 19, 25.",
        "Calculate 316 using all of these numbers: 41, 12, 19, 25.",
    ],
)
def test_reasoning_gym_countdown_wordings_parse(question: str) -> None:
    task = parse_countdown(question)
    assert task is not None and task.numbers == (41, 12, 19, 25) and task.target == 316


def test_countdown_questions_parse_and_split_by_first_operation() -> None:
    task = parse_countdown("Use the numbers 25, 5, 4, each at most once, with +, -, * and / to make 80. Write...")
    assert task is not None and task.numbers == (25, 5, 4) and task.target == 80
    steps = first_steps(task, 4)
    assert len({s.operator for s in steps}) == 4 and len({s.rest.numbers for s in steps}) == 4
    minus = next(s for s in first_steps(task, 20) if s.expression == "(25 - 5)")
    assert minus.rest.numbers == (4, 20) and minus.compose("20 * 4") == "(25 - 5) * 4"


async def test_the_countdown_split_checks_what_the_children_found() -> None:
    question = "Use the numbers 25, 5, 4, each at most once, with +, -, * and / to make 80."

    def script(prompt: str, sampling) -> list[str]:
        if CHILD_PROMPT in prompt:
            return ["Result: 20 * 4" if "4, 20" in prompt else "Result: 1 + 1"]
        return ["The join found it. The answer is (25 - 5) * 4."]

    backend = ScriptedBackend(script)
    strategy = get_strategy("spawn_join")
    params = strategy.parse_params({"decomposition": "countdown", "max_children": 16})
    result = await strategy.run(question, new_session(backend, BudgetMeter(Budget())), params)
    assert result.answer == "(25 - 5) * 4" and countdown_correct(result.answer, [25, 5, 4], 80)
    assert "(checks: equals 80)" in result.output and result.trace["protocol"] == "countdown split"
    assert all(CHILD_PROMPT in call[0] for call in backend.calls)  # checked: the parent need not resume


async def test_countdown_children_sample_and_keep_the_try_that_checks() -> None:
    question = "Use the numbers 25, 5, 4, each at most once, with +, -, * and / to make 80."

    tries = ["20 + 4 = 24. Result: 80", "I think 20 * 4 = 80. Result: 80", "Result: 80"]

    def script(prompt: str, sampling) -> list[str]:
        assert CHILD_PROMPT in prompt and sampling.n == 3  # all tries in one request
        return tries if "4, 20" in prompt else ["Result: 1 + 1"] * 3

    backend = ScriptedBackend(script)
    strategy = get_strategy("spawn_join")
    params = strategy.parse_params(
        {"decomposition": "countdown", "max_children": 16, "child_samples": 3, "temperature": 0.7}
    )
    meter = BudgetMeter(Budget())
    result = await strategy.run(question, new_session(backend, meter), params)
    assert result.answer == "(25 - 5) * 4"
    [children] = result.trace["threads"]["rounds"]
    chosen = next(c for c in children if "4, 20" in c["task"])
    assert chosen["result"] == "20 * 4" and chosen["tokens"] == sum(map(len, tries))
    assert len(backend.calls) == len(children) and meter.usage.completion_tokens == result.trace["thread_tokens"]
    assert meter.usage.critical_path_tokens == max(map(len, tries))  # the tries run at once; nothing else ran


async def test_with_nothing_checked_the_countdown_parent_resumes_and_answers() -> None:
    question = "Use the numbers 25, 5, 4, each at most once, with +, -, * and / to make 80."

    def script(prompt: str, sampling) -> list[str]:
        return ["Result: 1 + 1"] if CHILD_PROMPT in prompt else ["None checks. The answer is 4 * (25 - 5)."]

    backend = ScriptedBackend(script)
    strategy = get_strategy("spawn_join")
    params = strategy.parse_params({"decomposition": "countdown", "max_children": 3})
    result = await strategy.run(question, new_session(backend, BudgetMeter(Budget())), params)
    assert CHILD_PROMPT not in backend.calls[-1][0] and "(checks" not in backend.calls[-1][0]
    assert result.answer == "4 * (25 - 5)"


@pytest.mark.parametrize(
    "bad", [{"max_children": 0}, {"max_depth": 9}, {"decomposition": "magic"}, {"child_samples": 4}]
)
def test_bad_params_name_the_field(bad: dict) -> None:
    from orchestrator.core.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match=next(iter(bad))):
        get_strategy("spawn_join").parse_params(bad)

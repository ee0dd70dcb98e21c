"""Chat requests: the conversation in every prompt, the answer's shape, seeds, streamed tokens,
and what the OpenAI-compatible endpoint accepts and refuses (pure logic, scripted engine)."""

from __future__ import annotations

import pytest

from api.openai_compat import ChatCompletionRequest, StopScanner, conversation, strategy_params, unsupported
from api.progress import describe
from orchestrator.core.backends.scripted import ScriptedBackend
from orchestrator.core.budget import Budget, BudgetMeter
from orchestrator.core.chat import ChatOptions, ConversationRenderer, Turn, shape_answer
from orchestrator.core.errors import BudgetExceededError, InvalidRequestError
from orchestrator.core.session import Session
from strategies import get_strategy


def chat_session(backend: ScriptedBackend, chat: ChatOptions, events: list[dict] | None = None) -> Session:
    async def emit(event: dict) -> None:
        if events is not None:
            events.append(event)

    return Session(backend, BudgetMeter(Budget()), emit=emit, chat=chat)


def test_the_conversation_comes_before_the_question_with_one_system_message() -> None:
    backend = ScriptedBackend(lambda p, s: ["ok"])
    history = [
        Turn(role="system", content="Be brief."),
        Turn(role="user", content="What is 2 + 2?"),
        Turn(role="assistant", content="4."),
    ]
    prompt = ConversationRenderer(backend.renderer, history).render_question("And 3 + 3?", system="Show steps.")
    assert prompt.count("system") == 1 and "Be brief.\n\nShow steps." in prompt
    assert prompt.index("What is 2 + 2?") < prompt.index("4.") < prompt.index("And 3 + 3?")


def test_the_answer_is_cut_at_a_stop_string_then_to_its_length() -> None:
    renderer = ScriptedBackend(lambda p, s: []).renderer  # one character, one token
    assert shape_answer("Step 1.\n\nStep 2.", ChatOptions(stop=["\n\n"]), renderer) == ("Step 1.", "stop")
    assert shape_answer("abcdefgh", ChatOptions(answer_max_tokens=3), renderer) == ("abc", "length")
    assert shape_answer("abc", ChatOptions(stop=["x"], answer_max_tokens=5), renderer) == ("abc", None)


async def test_a_seeded_request_seeds_each_engine_call_in_order() -> None:
    backend = ScriptedBackend(lambda p, s: ["The answer is 4."] * s.n)
    session = chat_session(backend, ChatOptions(seed=7))
    strategy = get_strategy("best_of_n")
    await strategy.run("2 + 2?", session, strategy.parse_params({"n": 2, "adaptive": True, "wave_size": 1}))
    seeds = [sampling.seed for _, sampling, _ in backend.calls]
    assert seeds == list(range(7, 7 + len(seeds))) and len(seeds) >= 2


async def test_direct_publishes_its_tokens_when_the_chat_streams() -> None:
    backend = ScriptedBackend(lambda p, s: ["3 + 4 = 7. The answer is 7."])
    events: list[dict] = []
    strategy = get_strategy("direct")
    session = chat_session(backend, ChatOptions(stream_tokens=True), events)
    result = await strategy.run("3 + 4?", session, strategy.parse_params({}))
    streamed = "".join(e["text"] for e in events if e["type"] == "delta")
    # the engine hands over the last tokens with the finished sample: the endpoint sends that rest
    assert streamed and result.output.startswith(streamed) and len(streamed) >= len(result.output) - 1
    quiet: list[dict] = []
    await strategy.run("3 + 4?", chat_session(backend, ChatOptions(), quiet), strategy.parse_params({}))
    assert quiet == [] and backend.calls[-1][1].logprobs is None  # no stream: no logprobs, no events


async def test_a_streamed_failure_is_raised_as_itself_and_split_characters_are_not_streamed() -> None:
    strategy = get_strategy("direct")
    backend = ScriptedBackend(lambda p, s: ["ab\ufffdcd"])
    events: list[dict] = []
    session = chat_session(backend, ChatOptions(stream_tokens=True, stop=["zz"]), events)
    result = await strategy.run("q", session, strategy.parse_params({}))
    assert [e["text"] for e in events] == ["ab"] and result.output == "ab\ufffdcd"
    assert backend.calls[-1][1].stop == ("zz",)  # the chat's stop strings reach the engine
    broke = Session(backend, BudgetMeter(Budget(max_tokens=5)), chat=ChatOptions(stream_tokens=True))
    with pytest.raises(BudgetExceededError):  # not an exception group: retries and error codes see it
        await strategy.run("a question longer than the budget", broke, strategy.parse_params({}))


def request(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "2 + 2?"}], **fields})


def test_what_ttc_cannot_honour_is_named_and_explicit_defaults_pass() -> None:
    assert (
        unsupported(request(n=1, logprobs=False, tools=[], presence_penalty=0, response_format={"type": "text"})) == []
    )
    problems = unsupported(request(n=2, tools=[{"type": "function"}], logprobs=True, colour="red"))
    assert problems == [
        "unknown field 'colour'",
        "n=2 is not supported",
        "tools=[{'type': 'function'}] is not supported",
        "logprobs=True is not supported",
    ]
    assert unsupported(request(response_format={"type": "json_object"}))
    assert unsupported(request(budget={"max_tokens": 100}, reasoning_effort="low"))


def test_the_last_user_message_is_the_question_and_the_rest_its_history() -> None:
    body = request(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2 + 2?"}]},
            {"role": "assistant", "content": "4."},
            {"role": "user", "content": "And 3 + 3?"},
        ]
    )
    question, history = conversation(body)
    assert question == "And 3 + 3?"
    assert [(t.role, t.content) for t in history] == [
        ("system", "Be brief."),
        ("user", "What is 2 + 2?"),
        ("assistant", "4."),
    ]
    for messages in (
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        [{"role": "tool", "content": "42"}, {"role": "user", "content": "q"}],
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "prefill"}],
    ):
        with pytest.raises(InvalidRequestError):
            conversation(request(messages=messages))


def test_sampling_fields_go_to_a_strategy_that_takes_them_and_are_refused_by_one_that_does_not() -> None:
    assert strategy_params(request(temperature=0.3, max_tokens=50), "direct") == {"temperature": 0.3, "max_tokens": 50}
    assert strategy_params(request(max_tokens=50), "auto") == {}  # the answer is cut to 50 tokens instead
    with pytest.raises(InvalidRequestError, match="auto does not sample with temperature"):
        strategy_params(request(temperature=0.3), "auto")
    with pytest.raises(InvalidRequestError, match="set twice"):
        strategy_params(request(temperature=0.3, params={"temperature": 0.9}), "direct")


def test_a_stream_stops_at_a_stop_string_split_across_deltas() -> None:
    scanner = StopScanner(["END"])
    sent = scanner.feed("The answer is 4. E") + scanner.feed("N") + scanner.feed("D and more") + scanner.feed("!")
    assert sent == "The answer is 4. " and scanner.stopped


def test_progress_events_read_as_one_line_each() -> None:
    route = {"type": "route", "wave": 2, "size": 4, "leader": "12", "leader_votes": 3, "samples": 6}
    line = describe({**route, "action": "wave", "reason": "3 of 6 agree: 2 more"})
    assert line == "auto, wave 2: 4 samples, leader 12 with 3 of 6 votes -> wave: 3 of 6 agree: 2 more\n"
    assert describe({"type": "delta", "text": "x"}) is None and describe({"type": "novel"}) == "novel\n"

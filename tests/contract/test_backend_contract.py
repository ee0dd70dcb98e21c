"""One contract for every generation backend, run against the real in-process engine
and a real `vllm serve` subprocess, both serving the embedded SmolLM2-135M-Instruct."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.core.backends.base import GenerationBackend, SamplingSettings
from orchestrator.core.errors import PromptTooLongError, RequestAbortedError

pytestmark = [pytest.mark.engine]

QUESTION = "What is 3 + 4? Answer briefly."


@pytest.fixture(params=["inprocess_backend", "remote_backend"], scope="session")
def backend(request: pytest.FixtureRequest) -> GenerationBackend:
    return request.getfixturevalue(request.param)


def long_prompt(backend: GenerationBackend, words: int) -> str:
    story = " ".join(f"item{index}" for index in range(words))
    return backend.renderer.render_question(f"Here is a list: {story}. How many items are there?")


async def test_batch_returns_one_result_per_prompt_in_order(backend: GenerationBackend) -> None:
    prompts = [backend.renderer.render_question(q) for q in ("Say hi.", QUESTION)]
    results = await backend.generate(prompts, SamplingSettings(n=3, max_tokens=12, temperature=0.8))
    assert len(results) == 2
    for prompt, result in zip(prompts, results, strict=True):
        assert result.prompt_tokens == len(backend.renderer.encode(prompt))
        assert len(result.completions) == 3
        for completion in result.completions:
            assert completion.finish_reason in {"stop", "length"}
            assert 1 <= len(completion.token_ids) <= 12
            if completion.finish_reason == "length":
                assert len(completion.token_ids) == 12
        assert result.completion_tokens == sum(len(c.token_ids) for c in result.completions)


async def test_text_matches_token_ids(backend: GenerationBackend) -> None:
    prompt = backend.renderer.render_question(QUESTION)
    [result] = await backend.generate([prompt], SamplingSettings(max_tokens=16, temperature=0.0))
    completion = result.completions[0]
    decoded = backend.renderer.tokenizer.decode(list(completion.token_ids), skip_special_tokens=True)
    assert decoded == completion.text


async def test_greedy_is_deterministic(backend: GenerationBackend) -> None:
    prompt = backend.renderer.render_question(QUESTION)
    greedy = SamplingSettings(max_tokens=16, temperature=0.0)
    first, second = await backend.generate([prompt, prompt], greedy)
    assert first.completions[0].text == second.completions[0].text


async def test_both_backends_render_and_generate_identically(inprocess_backend, remote_backend) -> None:
    question = "Name a colour."
    local_prompt = inprocess_backend.renderer.render_question(question, partial_assistant="Sure! ")
    remote_prompt = remote_backend.renderer.render_question(question, partial_assistant="Sure! ")
    assert local_prompt == remote_prompt
    greedy = SamplingSettings(max_tokens=12, temperature=0.0)
    [local] = await inprocess_backend.generate([local_prompt], greedy)
    [remote] = await remote_backend.generate([remote_prompt], greedy)
    assert local.completions[0].token_ids == remote.completions[0].token_ids


async def test_stop_string_ends_the_completion(backend: GenerationBackend) -> None:
    prompt = backend.renderer.render_question("Count from 1 to 10, one number per line.")
    settings = SamplingSettings(max_tokens=40, temperature=0.0)
    [free] = await backend.generate([prompt], settings)
    assert "\n" in free.completions[0].text  # the greedy answer writes a line break: the stop has one to find
    [plain] = await backend.generate([prompt], settings.model_copy(update={"stop": ("\n",)}))
    [kept] = await backend.generate(
        [prompt], settings.model_copy(update={"stop": ("\n",), "include_stop_str_in_output": True})
    )
    assert plain.completions[0].finish_reason == kept.completions[0].finish_reason == "stop"
    assert "\n" not in plain.completions[0].text
    assert kept.completions[0].text.endswith("\n") and kept.completions[0].text.count("\n") == 1


async def test_logprobs_cover_every_sampled_token(backend: GenerationBackend) -> None:
    prompt = backend.renderer.render_question(QUESTION)
    [result] = await backend.generate([prompt], SamplingSettings(max_tokens=8, temperature=0.0, logprobs=2))
    completion = result.completions[0]
    assert completion.logprobs is not None
    assert len(completion.logprobs) == len(completion.token_ids)
    for position in completion.logprobs:
        assert position.logprob <= 0.0
        assert position.token in position.top
        assert len(position.top) >= 2
        # greedy: the sampled token is the most likely one
        assert position.logprob == pytest.approx(max(position.top.values()), abs=1e-3)


async def test_repeated_prefix_is_served_from_cache(backend: GenerationBackend) -> None:
    prompt = long_prompt(backend, 60)
    before = await backend.counters()
    [first] = await backend.generate([prompt], SamplingSettings(max_tokens=4))
    [second] = await backend.generate([prompt], SamplingSettings(max_tokens=4))
    assert first.prompt_tokens == second.prompt_tokens > 64
    assert second.cached_prompt_tokens >= 64
    assert second.cached_prompt_tokens <= second.prompt_tokens
    after = await backend.counters()
    assert after.prefix_cache_hits - before.prefix_cache_hits >= 64
    assert after.prefix_cache_queries > before.prefix_cache_queries


async def test_prompt_longer_than_context_is_a_client_error(backend: GenerationBackend) -> None:
    too_long = list(backend.renderer.encode(long_prompt(backend, 10))) * 200
    with pytest.raises(PromptTooLongError, match="context"):
        await backend.generate([too_long], SamplingSettings(max_tokens=4))
    await backend.health()  # the engine is unharmed


async def test_max_tokens_is_fitted_to_the_remaining_context(backend: GenerationBackend) -> None:
    base = list(backend.renderer.encode(long_prompt(backend, 10)))
    filler = base * (backend.model.max_model_len // len(base))
    prompt = filler[: backend.model.max_model_len - 3]
    [result] = await backend.generate([prompt], SamplingSettings(max_tokens=100, temperature=1.0))
    assert all(len(c.token_ids) <= 3 for c in result.completions)


async def test_abort_stops_a_running_request(backend: GenerationBackend) -> None:
    prompt = backend.renderer.render_question("Write a very long story about a dragon.")
    long_run = SamplingSettings(max_tokens=1500, temperature=1.0)
    outcome: list[BaseException] = []

    async def generate() -> None:
        try:
            await backend.generate([prompt], long_run, request_ids=["abort-me-" + type(backend).__name__])
        except RequestAbortedError as error:
            outcome.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(generate)
        await anyio.sleep(1.5)
        await backend.abort("abort-me-" + type(backend).__name__)
    assert outcome, "the aborted request should fail with RequestAbortedError"
    await _wait_until_idle(backend)


async def test_a_sample_stopped_while_it_is_decoded_is_aborted_in_the_engine(backend: GenerationBackend) -> None:
    prompt = backend.renderer.render_question("Write a very long story about a lighthouse.")
    sampling = SamplingSettings(max_tokens=1500, temperature=1.0, logprobs=5)
    seen: list[int] = []

    def enough(logprobs) -> bool:  # what DeepConf online asks after every decoded step
        seen.append(len(logprobs))
        return len(logprobs) >= 24

    [result] = await backend.generate([prompt], sampling, stop_when=enough)
    [completion] = result.completions
    assert completion.finish_reason == "abort" and 24 <= len(completion.token_ids) < 1500
    assert len(completion.logprobs) == len(completion.token_ids) and completion.text
    assert seen == sorted(seen) and len(seen) > 1  # judged as it grew, not once at the end
    await _wait_until_idle(backend)  # the engine stopped decoding it


async def test_cancelling_the_caller_aborts_engine_requests(backend: GenerationBackend) -> None:
    prompt = backend.renderer.render_question("Write a very long story about a knight.")
    streams, started = 4, (await backend.counters()).generation_tokens
    async with anyio.create_task_group() as group:
        sampling = SamplingSettings(n=2, max_tokens=1500, temperature=1.0)
        group.start_soon(backend.generate, [prompt, prompt], sampling)
        with anyio.fail_after(60):
            while (await backend.counters()).generation_tokens < started + 10 * streams:  # noqa: ASYNC110
                await anyio.sleep(0.1)  # all four stories under way
        group.cancel_scope.cancel()  # the caller gives up
    at_cancel = (await backend.counters()).generation_tokens
    await _wait_until_idle(backend)
    # Left running, four stories of up to 1,500 tokens would go on for hundreds of tokens; the
    # engine's own count shows they stopped within a few decoding steps of the cancellation.
    assert (await backend.counters()).generation_tokens - at_cancel <= 20 * streams


async def test_health_and_counters(backend: GenerationBackend) -> None:
    await backend.health()
    counters = await backend.counters()
    assert counters.prefix_cache_queries >= counters.prefix_cache_hits >= 0
    assert 0.0 <= counters.kv_cache_usage <= 1.0
    assert 0.0 <= counters.prefix_cache_hit_rate <= 1.0


async def _wait_until_idle(backend: GenerationBackend) -> None:
    """Requests no longer run in the engine (counters lag by one engine step)."""
    with anyio.fail_after(20):
        while True:
            await anyio.sleep(0.5)
            counters = await backend.counters()
            if counters.requests_running == 0 and counters.requests_waiting == 0:
                return

"""Prompt rendering with the embedded model's real chat template."""

from __future__ import annotations

import pytest

from orchestrator.core.errors import InvalidRequestError
from orchestrator.core.rendering import ChatRenderer


@pytest.fixture(scope="module")
def renderer(model_dir) -> ChatRenderer:
    return ChatRenderer.from_pretrained(model_dir)


def test_question_is_rendered_ready_for_the_assistant(renderer: ChatRenderer) -> None:
    text = renderer.render_question("What is 7 + 5?", system="Be brief.")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "<|im_start|>user\nWhat is 7 + 5?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_partial_assistant_turn_is_continued_verbatim(renderer: ChatRenderer) -> None:
    base = renderer.render_question("What is 7 + 5?")
    partial = "Step 1: 7 + 5 = 12.\n\n"
    continued = renderer.render_question("What is 7 + 5?", partial_assistant=partial)
    assert continued == base + partial  # the step delimiter survives; the turn stays open
    assert not continued.endswith("<|im_end|>\n")


def test_special_tokens_are_single_tokens(renderer: ChatRenderer) -> None:
    ids = renderer.encode(renderer.render_question("hi"))
    im_start = renderer.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == im_start
    assert renderer.decode(ids) == renderer.render_question("hi")


def test_an_assistant_message_last_is_refused(renderer: ChatRenderer) -> None:
    with pytest.raises(InvalidRequestError, match="partial_assistant"):
        renderer.render([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    with pytest.raises(InvalidRequestError):
        renderer.render([])


def test_missing_model_names_the_setting(tmp_path) -> None:
    from orchestrator.core.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="TTC_MODEL"):
        ChatRenderer.from_pretrained(tmp_path / "nope")

"""Prompt rendering with the embedded model's real chat template."""

from __future__ import annotations

import json

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


def test_the_tokenizer_is_autotokenizers_without_importing_torch(model_dir, tmp_path) -> None:
    """The class the model's tokenizer_config.json names, loaded without AutoTokenizer's imports
    (torch among them: seconds at every start of a process that never runs a model); a directory
    that names no class still gets AutoTokenizer's choice."""
    import subprocess
    import sys

    from transformers import AutoTokenizer

    loaded = f"""
import sys
from orchestrator.core.rendering import ChatRenderer
tokenizer = ChatRenderer.from_pretrained({str(model_dir)!r}).tokenizer
print(type(tokenizer).__name__, "torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", loaded], capture_output=True, text=True, check=True)
    expected = AutoTokenizer.from_pretrained(model_dir)
    assert done.stdout.split() == [type(expected).__name__, "False"]
    ours = ChatRenderer.from_pretrained(model_dir).tokenizer
    text = "<|im_start|>user\n7 + 5 = 12.\n\n  é 中<|im_end|>"
    assert ours.encode(text) == expected.encode(text)
    for name in ("tokenizer.json", "special_tokens_map.json", "chat_template.jinja"):
        if (model_dir / name).exists():
            (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config.pop("tokenizer_class", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert ChatRenderer.from_pretrained(tmp_path).tokenizer.encode(text) == expected.encode(text)

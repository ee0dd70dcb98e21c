"""Prompt rendering through the model's own chat template.

Both backends receive token ids produced here, so a prompt means exactly the same
thing on the embedded engine and on a remote fleet. Step-wise search extends a
partial assistant turn: the template renders the conversation up to the assistant
header and the partial text is appended verbatim — not re-rendered as a finished
message, which would close the turn, and not stripped, which would lose the step
delimiter the next step continues from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypedDict

from orchestrator.core.errors import InvalidRequestError, ModelNotFoundError


class Message(TypedDict):
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


class ChatRenderer:
    """Renders chat messages to prompt text and token ids with one tokenizer."""

    def __init__(self, tokenizer) -> None:  # a transformers PreTrainedTokenizer(Fast)
        if not getattr(tokenizer, "chat_template", None):
            raise ModelNotFoundError("the model's tokenizer has no chat template; use an instruction-tuned model")
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path) -> ChatRenderer:
        """Load the tokenizer of a local model directory or hub name."""
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        except (OSError, ValueError) as error:
            raise ModelNotFoundError(
                f"cannot load a tokenizer from {name_or_path!r} ({error}); set TTC_MODEL (or TTC_TOKENIZER) "
                "to a local model directory or a reachable hub name"
            ) from None
        return cls(tokenizer)

    def render(self, messages: Sequence[Message], *, partial_assistant: str | None = None) -> str:
        """Render a conversation ready for the assistant's reply.

        With ``partial_assistant`` the reply is already begun and generation continues it.
        Example: ``renderer.render([{"role": "user", "content": "2+2?"}], partial_assistant="Step 1:")``.
        """
        if not messages:
            raise InvalidRequestError("a prompt needs at least one message")
        if messages[-1]["role"] == "assistant":
            raise InvalidRequestError("pass the assistant's partial reply as partial_assistant, not as a message")
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return text + (partial_assistant or "")

    def render_question(self, question: str, *, system: str | None = None, partial_assistant: str | None = None) -> str:
        """Render a single user question (with an optional system message)."""
        messages: list[Message] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": question})
        return self.render(messages, partial_assistant=partial_assistant)

    def encode(self, text: str) -> list[int]:
        """Token ids of rendered text; the template already placed every special token."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of token ids, special tokens kept."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=False)

    def count_tokens(self, text: str) -> int:
        """Number of tokens the text costs as a prompt."""
        return len(self.encode(text))

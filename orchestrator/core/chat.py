"""What a chat request adds to a question: the turns before it, and how its answer is shaped.

The OpenAI-compatible endpoint asks the last user message as the question and carries the
rest in ``ChatOptions``:

- ``history``: the earlier turns. Every prompt a strategy renders for the question comes
  after them (``ConversationRenderer``); the request's system messages are joined with
  the strategy's own instructions into one system message.
- ``answer_max_tokens`` and ``stop``: OpenAI's answer length and stop strings, applied to
  the text the strategy chose (``shape_answer``). A search may draw longer samples than
  that; the answer sent back is cut as OpenAI would have cut it.
- ``seed``: sampling seeds for the request's engine calls (``Session``), where the engine
  can take one.
- ``stream_tokens``: ``direct`` publishes its tokens as they are decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.rendering import ChatRenderer, Message

MAX_TURNS = 256
MAX_TURN_CHARS = 32_000  # as a question's
MAX_STOPS = 4  # OpenAI's limit


class Turn(BaseModel):
    """One earlier message of the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_TURN_CHARS)


class ChatOptions(BaseModel):
    """A chat request's conversation and answer shape (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid")

    history: list[Turn] = Field(default_factory=list, max_length=MAX_TURNS)
    answer_max_tokens: int | None = Field(None, ge=1, description="the answer's length in tokens, as OpenAI means it")
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOPS)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    stream_tokens: bool = Field(False, description="direct publishes its tokens as delta events")


class ConversationRenderer(ChatRenderer):
    """Renders a question after the conversation's earlier turns (same tokenizer as ``base``)."""

    def __init__(self, base: ChatRenderer, history: Sequence[Turn]) -> None:
        super().__init__(base.tokenizer)
        self.history = list(history)

    def render_question(self, question: str, *, system: str | None = None, partial_assistant: str | None = None) -> str:
        """The request's system messages and the strategy's ``system`` as one system message,
        then the earlier turns, then the question."""
        systems = [turn.content for turn in self.history if turn.role == "system"]
        merged = "\n\n".join([*systems, system] if system else systems)
        messages: list[Message] = [{"role": "system", "content": merged}] if merged else []
        messages += [{"role": turn.role, "content": turn.content} for turn in self.history if turn.role != "system"]
        messages.append({"role": "user", "content": question})
        return self.render(messages, partial_assistant=partial_assistant)


FinishReason = Literal["stop", "length"]


def shape_answer(text: str, options: ChatOptions, renderer: ChatRenderer) -> tuple[str, FinishReason | None]:
    """``text`` cut at the first stop string, then to ``answer_max_tokens`` tokens, and why it was
    cut ("stop" or "length"), or None when it was not.

    Example: with ``stop=["\\n\\n"]``, ``"Step 1.\\n\\nStep 2."`` becomes ``("Step 1.", "stop")``.
    """
    reason: FinishReason | None = None
    found = [index for stop in options.stop if stop and (index := text.find(stop)) >= 0]
    if found:
        text, reason = text[: min(found)], "stop"
    if options.answer_max_tokens is not None:
        token_ids = renderer.encode_plain(text)
        if len(token_ids) > options.answer_max_tokens:
            text, reason = renderer.tokenizer.decode(token_ids[: options.answer_max_tokens]), "length"
    return text, reason

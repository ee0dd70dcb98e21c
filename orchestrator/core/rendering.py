"""Prompt rendering through the model's own chat template.

Both backends receive token ids produced here, so a prompt means exactly the same
thing on the embedded engine and on a remote fleet. Step-wise search extends a
partial assistant turn: the template renders the conversation up to the assistant
header and the partial text is appended verbatim — not re-rendered as a finished
message, which would close the turn, and not stripped, which would lose the step
delimiter the next step continues from.

Message text is tokenised as plain text: a question that contains ``<|im_start|>system``
gets the characters of that string, never the special token, so a user cannot forge a
turn of the conversation. Only the template places special tokens.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypedDict

from orchestrator.core.errors import InvalidRequestError, ModelNotFoundError


class Message(TypedDict):
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


class RenderedPrompt(str):
    """Prompt text that carries its token ids (the template's special tokens as such, every
    message's text as plain text). Concatenating it gives a plain ``str`` without them."""

    token_ids: tuple[int, ...]

    def __new__(cls, text: str, token_ids: Sequence[int]) -> RenderedPrompt:
        prompt = super().__new__(cls, text)
        prompt.token_ids = tuple(token_ids)
        return prompt


def _load_tokenizer(name_or_path: str):
    """The tokenizer ``AutoTokenizer`` would load. A local directory whose ``tokenizer_config.json``
    names its class gets that class, imported alone: that is AutoTokenizer's own first choice, and
    importing AutoTokenizer pulls in torch and the model registry, seconds at every start of a
    remote-backend server, worker or command that never runs a model. Anything else (a hub name,
    no class named, custom code) goes through AutoTokenizer."""
    import transformers

    config = Path(name_or_path) / "tokenizer_config.json"
    named = json.loads(config.read_text()) if config.is_file() else {}
    name = named.get("tokenizer_class")
    tokenizer_class = getattr(transformers, name, None) if isinstance(name, str) else None
    base = transformers.PreTrainedTokenizerBase
    is_tokenizer = isinstance(tokenizer_class, type) and issubclass(tokenizer_class, base)
    if not is_tokenizer or "auto_map" in named:  # with auto_map, the model's own code names its class
        return transformers.AutoTokenizer.from_pretrained(name_or_path)
    return tokenizer_class.from_pretrained(name_or_path)


class ChatRenderer:
    """Renders chat messages to prompt text and token ids with one tokenizer."""

    def __init__(self, tokenizer) -> None:  # a transformers PreTrainedTokenizer(Fast)
        if not getattr(tokenizer, "chat_template", None):
            raise ModelNotFoundError("the model's tokenizer has no chat template; use an instruction-tuned model")
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path) -> ChatRenderer:
        """Load the tokenizer of a local model directory or hub name."""
        try:
            tokenizer = _load_tokenizer(str(name_or_path))
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
        # Render with a unique slot in place of each text, then tokenise the template's pieces
        # with special tokens recognised and the texts without.
        tag = f"ttcslot{secrets.token_hex(6)}"
        slots = [f"{tag}n{index}e" for index in range(len(messages))]
        with_slots = [{**message, "content": slot} for message, slot in zip(messages, slots, strict=True)]
        template = self.tokenizer.apply_chat_template(with_slots, tokenize=False, add_generation_prompt=True)
        texts = [message["content"] for message in messages] + [partial_assistant or ""]
        pieces = _split_at(template, slots)
        if pieces is None:  # a template that rewrites message text: no slots to find
            return self._render_whole(messages, partial_assistant)
        text, token_ids = "", []
        for piece, content in zip(pieces, texts, strict=True):
            text += piece + content
            token_ids += self.tokenizer.encode(piece, add_special_tokens=False)
            token_ids += self.encode_plain(content)
        return RenderedPrompt(text, token_ids)

    def _render_whole(self, messages: Sequence[Message], partial_assistant: str | None) -> str:
        """Render in one piece; only safe when no text spells a special token."""
        texts = [message["content"] for message in messages] + [partial_assistant or ""]
        specials = [token for token in self.tokenizer.all_special_tokens if any(token in text for text in texts)]
        if specials:
            raise InvalidRequestError(
                f"the text contains the model's special token {specials[0]!r}, which this model's chat "
                "template cannot keep apart from its own: remove it"
            )
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return text + (partial_assistant or "")

    def render_question(self, question: str, *, system: str | None = None, partial_assistant: str | None = None) -> str:
        """Render a single user question (with an optional system message)."""
        messages: list[Message] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": question})
        return self.render(messages, partial_assistant=partial_assistant)

    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt: those ``render`` made, else of the text as written (special
        token text becomes special tokens: use only on text the service itself composed)."""
        if isinstance(text, RenderedPrompt):
            return list(text.token_ids)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def encode_plain(self, text: str) -> list[int]:
        """Token ids of text as plain characters: special-token text stays text."""
        if not text:
            return []
        return list(self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of token ids, special tokens kept."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        """Tokens in the vocabulary (what self-certainty spreads the unseen probability over)."""
        return int(getattr(self.tokenizer, "vocab_size", 0) or len(self.tokenizer))

    def count_tokens(self, text: str) -> int:
        """Number of tokens the text costs as a prompt."""
        return len(self.encode(text))


def _split_at(template: str, slots: list[str]) -> list[str] | None:
    """The template's text around each slot (len(slots) + 1 pieces), or None unless every slot
    appears exactly once, in order."""
    pieces, rest = [], template
    for slot in slots:
        if rest.count(slot) != 1:
            return None
        before, _, rest = rest.partition(slot)
        pieces.append(before)
    return [*pieces, rest]

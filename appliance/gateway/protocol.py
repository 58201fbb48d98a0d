"""The OpenAI request bodies the gateway accepts: checked just enough to route, meter and relay them.

Everything else in a body (sampling parameters, tools, vLLM's extra fields) is passed to the engine
untouched, so the engine stays the authority on what it supports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from appliance.gateway.errors import bad_request


class Kind(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self is Kind.CHAT else "/v1/completions"


@dataclass
class Call:
    """One parsed request: what the gateway needs to know about it, and the body to forward."""

    kind: Kind
    model: str
    body: dict[str, Any]
    stream: bool
    include_usage: bool  # the client asked for the usage chunk in its stream
    max_tokens: int | None  # max_completion_tokens or max_tokens, as the client sent it
    prompt_estimate: int


# Bytes per token, rounded down so that the reservation overestimates: English runs ~4 bytes a
# token, Chinese (3 bytes a character in UTF-8) ~1.4 characters a token. Settling corrects it.
_BYTES_PER_TOKEN = 3
_TOKENS_PER_MESSAGE = 4  # the chat template's role markers


def parse(raw: bytes, kind: Kind) -> Call:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("`model` is required.", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("`stream` must be true or false.", param="stream")
    estimate = _chat_estimate(body) if kind is Kind.CHAT else _completion_estimate(body)
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    return Call(kind, model, body, stream, include_usage, _max_tokens(body), estimate)


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad_request(f"`{name}` must be a positive integer.", param=name)
        return value
    return None


def _chat_estimate(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty list.", param="messages")
    total = 0
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request("Each message needs a `role`.", param="messages")
        total += text_bytes(message.get("content")) + _TOKENS_PER_MESSAGE * _BYTES_PER_TOKEN
    return total // _BYTES_PER_TOKEN + 1


def _completion_estimate(body: dict[str, Any]) -> int:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return text_bytes(prompt) // _BYTES_PER_TOKEN + 1
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, int) for p in prompt):
            return len(prompt)  # already tokens
        if all(isinstance(p, str) for p in prompt):
            return sum(text_bytes(p) for p in prompt) // _BYTES_PER_TOKEN + 1
    raise bad_request("`prompt` must be a string, a list of strings or a list of token ids.", param="prompt")


def text_bytes(content: Any) -> int:
    """UTF-8 size of a message's text: a string, or the ``text`` parts of a list of content parts."""
    if isinstance(content, str):
        return len(content.encode())
    if isinstance(content, list):
        return sum(len(str(part.get("text", "")).encode()) for part in content if isinstance(part, dict))
    return 0

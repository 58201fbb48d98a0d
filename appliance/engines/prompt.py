"""How many prompt tokens an engine may bill for a request, bounded from above without its tokenizer.

Every tokenizer the engines load (byte-level BPE as in Llama 3, Qwen and SmolLM2; SentencePiece with
byte fallback as in Llama 2 and Mistral) turns a text into at most one token per UTF-8 byte, plus
one for SentencePiece's dummy prefix: so ``bytes + 1`` per text is a bound, never an estimate that
a Chinese or emoji-heavy prompt can beat. What the text does not show is the chat template: a default
system prompt and role markers that make "hi" 20–30 tokens. That is measured on each engine once
it serves (:func:`measure`) and kept per instance; until then a configured allowance is used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

# A completion prompt has no template, but the engine may add BOS (and EOS) around each prompt.
COMPLETION_FRAMING = 2
_PROBE = "a"


@dataclass(frozen=True)
class TemplateCost:
    """Tokens the chat template adds: ``template`` for a one-message conversation (default system
    prompt, markers, generation prompt; it includes that message's one-letter probe, so it is high by
    one), and ``per_message`` for each further message."""

    template: int
    per_message: int

    def chat(self, messages: int) -> int:
        return self.template + max(0, messages - 1) * self.per_message


def text_bound(text: str) -> int:
    return len(text.encode()) + 1


def strings(value: Any) -> Iterable[str]:
    """Every string inside a JSON value (message content parts, tool calls, names), keys excluded."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def message_bound(message: dict[str, Any]) -> int:
    """The text of one chat message, role aside (the template cost covers the role's markers)."""
    return sum(text_bound(s) for key, s in _fields(message) if key != "role")


def _fields(message: dict[str, Any]) -> Iterable[tuple[str, str]]:
    for key, value in message.items():
        for text in strings(value):
            yield key, text


def tools_bound(body: dict[str, Any]) -> int:
    """Tool and function definitions, which templates render into the prompt as JSON."""
    found = [body[name] for name in ("tools", "functions") if body.get(name)]
    return sum(len(json.dumps(value, ensure_ascii=False).encode()) for value in found)


def _prompt_tokens(base_url: str, client: httpx.Client, model: str, messages: list[dict[str, str]]) -> int | None:
    body = {"model": model, "messages": messages, "max_tokens": 1, "temperature": 0, "stream": False}
    try:
        resp = client.post(base_url.rstrip("/") + "/v1/chat/completions", json=body)
        usage = resp.json().get("usage") if resp.status_code == httpx.codes.OK else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    count = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None


def measure(base_url: str, client: httpx.Client, model: str) -> TemplateCost | None:
    """Ask the engine what a one-message and a three-message conversation cost; None if it won't say."""
    one = [{"role": "user", "content": _PROBE}]
    three = [*one, {"role": "assistant", "content": _PROBE}, {"role": "user", "content": _PROBE}]
    first = _prompt_tokens(base_url, client, model, one)
    third = _prompt_tokens(base_url, client, model, three)
    if first is None or third is None:
        return None
    return TemplateCost(template=first, per_message=max(1, math.ceil((third - first) / 2)))

"""The OpenAI request bodies the gateway accepts: checked just enough to route, meter and relay them.

Everything else in a body (sampling parameters, tools, vLLM's extra fields) is passed to the engine
untouched, so the engine stays the authority on what it supports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from appliance.engines import prompt
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
    prompt_estimate: int  # an upper bound of the prompt's tokens, the chat template aside (engines/prompt.py)
    messages: int = 0  # chat messages, for the template's per-message cost
    prompts: int = 1  # prompts in a batched completion: each gets its own answers
    choices: int = 1  # answers written per prompt: max(n, best_of)
    media_urls: tuple[str, ...] = ()  # image/audio/video URLs in the messages, which vLLM would fetch

    @property
    def sequences(self) -> int:
        """How many completions of up to ``max_tokens`` the engine may write for this request."""
        return self.prompts * self.choices


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
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    call = Call(kind, model, body, stream, include_usage, _max_tokens(body), 0, choices=_choices(body))
    if kind is Kind.CHAT:
        call.prompt_estimate, call.messages = _chat_bound(body)
        call.media_urls = tuple(_media_urls(body["messages"]))
    else:
        call.prompt_estimate, call.prompts = _completion_bound(body)
    return call


def _positive(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad_request(f"`{name}` must be a positive integer.", param=name)
    return value


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = _positive(body, name)
        if value is not None:
            return value
    return None


def _choices(body: dict[str, Any]) -> int:
    # best_of answers are generated and the best n returned: the engine writes all best_of of them.
    return max(_positive(body, "n") or 1, _positive(body, "best_of") or 1)


def _chat_bound(body: dict[str, Any]) -> tuple[int, int]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty list.", param="messages")
    total = prompt.tools_bound(body)
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request("Each message needs a `role`.", param="messages")
        total += prompt.message_bound(message)
    return total, len(messages)


def _completion_bound(body: dict[str, Any]) -> tuple[int, int]:
    """(upper bound of the prompt tokens, number of prompts) for every prompt shape OpenAI accepts."""
    prompts = body.get("prompt")
    if isinstance(prompts, str) or (isinstance(prompts, list) and prompts and _is_ids(prompts)):
        prompts = [prompts]
    if not isinstance(prompts, list) or not prompts:
        raise bad_request(_PROMPT_SHAPES, param="prompt")
    total = 0
    for one in prompts:
        if isinstance(one, str):
            total += prompt.text_bound(one) + prompt.COMPLETION_FRAMING
        elif isinstance(one, list) and one and _is_ids(one):
            total += len(one) + prompt.COMPLETION_FRAMING
        else:
            raise bad_request(_PROMPT_SHAPES, param="prompt")
    suffix = body.get("suffix")
    if isinstance(suffix, str):
        total += prompt.text_bound(suffix) * len(prompts)
    return total, len(prompts)


# Content parts whose URL the engine fetches (OpenAI's image_url; vLLM's audio_url and video_url).
_MEDIA_PARTS = ("image_url", "audio_url", "video_url")


def _media_urls(messages: list[dict[str, Any]]) -> list[str]:
    found = []
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            for name in _MEDIA_PARTS:
                value = part.get(name) if isinstance(part, dict) else None
                url = value.get("url") if isinstance(value, dict) else value
                if url is not None:
                    found.append(str(url))
    return found


def refuse_unlisted_media(call: Call, allowed: frozenset[str]) -> None:
    """400 for a media URL the engine would fetch from a host its department did not list (SSRF).

    Inline ``data:`` URLs fetch nothing. Hosts are compared exactly, as vLLM's --allowed-media-domains.
    """
    for url in call.media_urls:
        if url.startswith("data:"):
            continue
        try:
            parsed = urlsplit(url)
            host = (parsed.hostname or "").rstrip(".")
        except ValueError:
            host, parsed = "", urlsplit("")
        if parsed.scheme not in ("http", "https") or host not in allowed:
            message = (
                f"`image_url` from {host or url[:40]!r} is not allowed: send the image inline as a data: URL, "
                "or ask a platform admin to list its domain for your department."
            )
            raise bad_request(message, param="messages", code="image_url_not_allowed")


_PROMPT_SHAPES = "`prompt` must be a string, a list of token ids, or a list of either."


def _is_ids(values: list[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)

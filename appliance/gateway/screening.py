"""Content safety on ``/v1``: the prompt is checked before the engine is asked; the answer is screened
as it streams (appliance/safety for the rules and the matching).

When no rule applies to the caller's department the gateway does none of this: ``Route.safety`` is
None and the relay passes the engine's bytes on as before. With rules, each SSE event of the answer
is one piece of the scanner: its text is the event's ``content``, ``reasoning_content`` or ``text``
(an event without text is a piece of no text, so the order of events is kept). Events the scanner
releases unchanged go out byte for byte; a masked or cut event is rewritten. At a blocking match the
client gets the text before it, an ``error`` event saying why (in the language of its
``Accept-Language``), ``[DONE]``, and the engine's request is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from django.utils.translation import gettext, trans_real

from appliance.gateway.admission import in_thread
from appliance.gateway.errors import GatewayError
from appliance.gateway.protocol import Call
from appliance.safety import recording
from appliance.safety.choices import BLOCKED_CODE, Action, Stage
from appliance.safety.matcher import Hit, Matcher, Released, StreamScanner, masked, strongest

logger = logging.getLogger(__name__)

# The text field of a streamed chunk, and its JSON string (escapes included).
_TEXT_VALUE = re.compile(rb'"(?:content|reasoning_content|text)":\s*"((?:[^"\\]|\\.)*)"')
_DONE = b"data: [DONE]"
_recording: set[asyncio.Task[Any]] = set()


def request_language(request: HttpRequest) -> str:
    """The console's language closest to the client's ``Accept-Language`` (the fast path has no LocaleMiddleware)."""
    for code, _quality in trans_real.parse_accept_lang_header(request.headers.get("Accept-Language", "")):
        if code == "*":
            break
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return str(settings.LANGUAGE_CODE)


def blocked_message(language: str, stage: str) -> str:
    with translation.override(language):
        if stage == Stage.PROMPT:
            return gettext("The request was blocked by your organisation's content-safety rules.")
        return gettext("The answer was stopped by your organisation's content-safety rules.")


def prompt_texts(call: Call) -> list[str]:
    if "messages" in call.body:
        texts = []
        for message in call.body["messages"]:
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return texts
    prompt = call.body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    return [p for p in prompt if isinstance(p, str)] if isinstance(prompt, list) else []


def record_later(context: recording.Context, stage: str, hits: list[Hit]) -> None:
    """Hits are written in a task of their own: a client leaving must not cancel their record."""
    if not hits:
        return
    task = asyncio.ensure_future(in_thread(recording.record_hits, context, stage, hits))
    _recording.add(task)
    task.add_done_callback(_recording.discard)


async def drain_recording() -> None:
    """Wait for hits still being written (tests, shutdown)."""
    while _recording:
        await asyncio.gather(*_recording, return_exceptions=True)


def check_prompt(matcher: Matcher, call: Call, context: recording.Context, language: str) -> None:
    hits = [
        Hit(hit.rules, hit.start, hit.end, recording.excerpt(text, hit))
        for text in prompt_texts(call)
        for hit in matcher.find(text)
    ]
    record_later(context, Stage.PROMPT, hits)
    if strongest(hits) == Action.BLOCK:
        raise GatewayError(400, blocked_message(language, Stage.PROMPT), code=BLOCKED_CODE)


def _sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def _with_text(event: bytes, text: str) -> bytes:
    """The event with its text replaced (masked or cut)."""
    payload = json.loads(event.partition(b":")[2])
    for choice in payload.get("choices") or []:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for name in ("content", "reasoning_content"):
                if isinstance(delta.get(name), str) and delta[name]:
                    delta[name] = text
                    return _sse(payload)
        elif isinstance(choice.get("text"), str):
            choice["text"] = text
            return _sse(payload)
    return event + b"\n\n"


class SseScreen:
    """One streamed answer's screening; ``feed`` takes the relay's output, returns what may go out."""

    def __init__(self, matcher: Matcher, context: recording.Context, language: str) -> None:
        self.scanner = StreamScanner(matcher, recording.excerpt_chars())
        self.context, self.language = context, language
        self.pending = b""
        self.recorded = False

    @property
    def blocked(self) -> bool:
        return self.scanner.blocked is not None

    def feed(self, data: bytes) -> bytes:
        *events, self.pending = (self.pending + data).split(b"\n\n")
        texts: list[str] = []
        tags: list[bytes] = []
        out: list[bytes] = []
        for event in events:
            if not event.strip():
                continue
            if event == _DONE:
                out += self._out(self.scanner.feed_many(texts, tags))
                texts, tags = [], []
                if not self.blocked:
                    out += [*self._out(self.scanner.finish()), _DONE + b"\n\n"]
                break
            found = _TEXT_VALUE.search(event)
            raw = found.group(1) if found else b""
            texts.append(json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode())
            tags.append(event)
        if texts:
            out += self._out(self.scanner.feed_many(texts, tags))
        if self.blocked:
            out += [self._blocked_event(), _DONE + b"\n\n"]
            self.record()
        return b"".join(out)

    def finish(self) -> bytes:
        """The source ended (with or without ``[DONE]``): everything held, and the hits recorded."""
        out = [self.feed(b"\n\n")] if self.pending.strip() else []
        if not self.blocked:
            out.extend(self._out(self.scanner.finish()))
        self.record()
        return b"".join(out)

    def record(self) -> None:
        if not self.recorded:
            self.recorded = True
            record_later(self.context, Stage.ANSWER, self.scanner.hits)

    @staticmethod
    def _out(released: list[Released]) -> list[bytes]:
        return [_with_text(tag, text) if changed else tag + b"\n\n" for text, changed, tag in released]

    def _blocked_event(self) -> bytes:
        message = blocked_message(self.language, Stage.ANSWER)
        return _sse({"error": {"message": message, "type": "invalid_request_error", "code": BLOCKED_CODE,
                               "param": None}})  # fmt: skip


def screen_whole(body: bytes, matcher: Matcher, context: recording.Context, language: str) -> bytes:
    """A non-streamed answer: masked in place, or a 400 when a blocking word is in it."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    hits: list[Hit] = []
    for choice in payload.get("choices") or [] if isinstance(payload, dict) else []:
        holder = choice.get("message") if isinstance(choice.get("message"), dict) else choice
        name = "content" if "message" in choice else "text"
        text = holder.get(name)
        if not isinstance(text, str):
            continue
        found = [Hit(h.rules, h.start, h.end, recording.excerpt(text, h)) for h in matcher.find(text)]
        hits += found
        holder[name] = masked(text, found)
    record_later(context, Stage.ANSWER, hits)
    if strongest(hits) == Action.BLOCK:
        raise GatewayError(400, blocked_message(language, Stage.ANSWER), code=BLOCKED_CODE)
    if not hits:
        return body
    return json.dumps(payload, ensure_ascii=False).encode()

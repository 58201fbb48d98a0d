"""Content safety on ``/v1``: the prompt is checked before the engine is asked; the answer is screened
as it streams (appliance/safety for the rules and the matching).

When no rule applies to the caller's department the gateway does none of this: ``Route.safety`` is
None and the relay passes the engine's bytes on as before. With rules, the text of the answer is the
``content``, ``reasoning_content`` and ``text`` fields of its SSE events, in order. Each read of the
relay (its complete events) is one piece of the scanner, tagged with the read's raw bytes, held until
the text after it is as long as the longest word less one character: no word can then start in it
and end later. A read is one event while the console keeps up with the engine (an engine's pace), so
the answer is held back by a few tokens; a read of many events comes when the console is behind the
engine, and then the next read is already waiting. Pieces the scanner releases unchanged go out byte
for byte; only the text fields of a masked or cut piece are rewritten. At a blocking
match the client gets the text before it, an ``error`` event saying why (in the language of its
``Accept-Language``), ``[DONE]``, and the engine's request is closed.

Why per read and on the raw bytes: the relay's ceiling is tens of thousands of events a second, so
per-event Python (splitting, parsing each event's JSON, a piece per event) cost more than the
automaton itself; this way a read costs one regular-expression pass, one decode and one scan, however
many events it carries (a piece per event held back within a read of four cost 2.8 µs an event,
one piece 1.1 µs: docs/performance.md, section 4).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from django.utils.translation import gettext, trans_real

from appliance.core import background, dbthreads
from appliance.engines import sse as engine_sse
from appliance.gateway.errors import GatewayError
from appliance.gateway.protocol import Call
from appliance.safety import recording
from appliance.safety.choices import BLOCKED_CODE, Action, Stage
from appliance.safety.matcher import Hit, Matcher, Released, StreamScanner, masked, strongest

logger = logging.getLogger(__name__)

# The text fields of streamed chunks, and their JSON strings (escapes included).
_TEXT_VALUE = engine_sse.TEXT_VALUE
_DONE = b"data: [DONE]\n\n"


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
    background.start(dbthreads.run(recording.record_hits, context, stage, hits))


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


def _text(values: list[bytes]) -> str:
    """The text of JSON string values (without their quotes), joined."""
    raw = values[0] if len(values) == 1 else b"".join(values)
    if b"\\" not in raw:
        return raw.decode(errors="replace")
    try:
        return "".join(json.loads(b'"' + value + b'"') for value in values)
    except ValueError:  # not JSON after all: screened as the characters it has
        return raw.decode(errors="replace")


def _event_start(block: bytes, position: int) -> int:
    start = block.rfind(b"\n\n", 0, position)
    return start + 2 if start >= 0 else 0


def _event_end(block: bytes, position: int) -> int:
    end = block.find(b"\n\n", position)
    return end + 2 if end >= 0 else len(block)


def _with_text(block: bytes, text: str) -> bytes:
    """``block``'s events with their text fields replaced by ``text``, the scanner's version of their
    joined text: as long (masked), or shorter (cut before a blocking word: the event the cut falls in
    keeps the text before it, the later events are dropped)."""
    out, done, offset, end = [], 0, 0, len(block)
    for found in _TEXT_VALUE.finditer(block):
        if found.start() >= end:
            break
        old = _text([found.group(1)])
        if not old:
            continue
        if offset >= len(text) and end == len(block):  # the cut falls before this event
            end = _event_start(block, found.start())
            break
        new = text[offset : offset + len(old)]
        offset += len(old)
        if new != old:
            out += [block[done : found.start(1)], json.dumps(new, ensure_ascii=False)[1:-1].encode()]
            done = found.end(1)
            if len(new) < len(old) and end == len(block):  # cut in this field: the rest of its event only
                end = _event_end(block, found.end())
    return b"".join(out) + block[done:end]


def _done_at(block: bytes) -> int:
    """Where the ``[DONE]`` event begins in ``block`` (complete events), or -1."""
    at = block.find(_DONE)
    while at > 0 and block[at - 2 : at] != b"\n\n":
        at = block.find(_DONE, at + 1)
    return at


class SseScreen:
    """One streamed answer's screening; ``feed`` takes the relay's output, returns what may go out."""

    def __init__(self, matcher: Matcher, context: recording.Context, language: str) -> None:
        self.scanner = StreamScanner(matcher, recording.excerpt_chars())
        self.context, self.language = context, language
        self.pending = b""
        self.recorded = False
        self.blocked = False  # a blocking word was found: nothing more goes out

    def feed(self, data: bytes, values: list[bytes] | None = None) -> bytes:
        """``values``: the text fields of ``data`` when the caller found them already (the relay passes
        them only with a read it passed on as it came: whole events, no ``[DONE]``)."""
        if self.blocked:
            return b""
        if self.pending:
            data, self.pending = self.pending + data, b""
        elif values is not None:
            return self.read(data, values)
        elif data.find(b"\n\n") == len(data) - 2 and data != _DONE:
            return self._screen(data)  # one whole event: nothing to keep for the next read
        end = data.rfind(b"\n\n") + 2
        if end < len(data):  # an incomplete event at the end: kept for the next read
            if end < 2:
                self.pending = data
                return b""
            data, self.pending = data[:end], data[end:]
        done = _done_at(data)
        if done < 0:
            return self._screen(data)
        out = self._screen(data[:done]) if done else b""
        return out if self.blocked else out + self._out(self.scanner.finish()) + _DONE

    def read(self, data: bytes, values: list[bytes]) -> bytes:
        """A read the relay passed on as it came (whole events, no ``[DONE]``: SseRelay.feed) and its
        text fields: nearly every read of a stream, so nothing here is checked twice."""
        if self.blocked:
            return b""
        if self.pending:  # an incomplete event held from an earlier read (not the relay's): joined first
            return self.feed(data)
        return self._screen(data, values)

    def finish(self) -> bytes:
        """The source ended (with or without ``[DONE]``): everything held, and the hits recorded."""
        out = [self.feed(b"\n\n")] if self.pending.strip() else []
        if not self.blocked:
            out.append(self._out(self.scanner.finish()))
        self.record()
        return b"".join(out)

    def record(self) -> None:
        if not self.recorded:
            self.recorded = True
            record_later(self.context, Stage.ANSWER, self.scanner.hits)

    def _screen(self, block: bytes, values: list[bytes] | None = None) -> bytes:
        """Complete events (one read): one piece, and what may go out of it and of those held before."""
        if values is None:
            values = _TEXT_VALUE.findall(block)
        if len(values) == 1 and b"\\" not in values[0]:  # one plain text field: the common event
            text = values[0].decode(errors="replace")
        else:
            text = _text(values)
        out = self.scanner.step(text, block)
        return out if type(out) is not list else self._after(out)

    def _after(self, released: list[Released]) -> bytes:
        """What goes out when a step released other than one piece unchanged: none, several, masked, or cut."""
        out = self._out(released)
        if self.scanner.blocked is not None:
            self.blocked = True
            self.record()
            return out + self._blocked_event() + _DONE
        return out

    @staticmethod
    def _out(released: list[Released]) -> bytes:
        if len(released) == 1 and not released[0].changed:
            return released[0].tag
        return b"".join(_with_text(tag, text) if changed else tag for text, changed, tag in released)

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

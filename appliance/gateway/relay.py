"""Relaying an OpenAI-compatible engine's answer to the client while counting what it cost.

Streams are passed on as the engine's reads arrive: each read's complete SSE events go out in one
write, nothing waits for more (an incomplete last event waits for the next read). Events that mention
neither ``usage`` nor ``[DONE]`` (nearly all of them) go out as they came, after one scan per read that
counts their text fields, the fallback when an engine sends no usage (llama-cpp-python ignores
``stream_options``); from the first that does, at the end of a stream, events are taken one by one,
and only events that mention ``usage`` are parsed (one per stream). CRLF streams (sse-starlette) are
taken event by event. The gateway
always asks the engine for the usage chunk and drops it again when the client did not ask for it;
when the client asked and the engine sent none, the gateway adds one from its own counts before
``[DONE]``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from appliance.engines import client
from appliance.engines import sse as engine_sse
from appliance.gateway.metering import Guard, UsageStatus
from appliance.gateway.protocol import Kind

logger = logging.getLogger(__name__)

# A chunk that carries generated text: one token in vLLM's and llama.cpp's streams.
_TEXT = re.compile(rb'"(?:content|text|reasoning_content)":\s*"(?!")')
_NULL_USAGE = (b'"usage":null', b'"usage": null')
DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def error_event(message: str) -> bytes:
    """How OpenAI reports a failure after the stream has started: an ``error`` object as an event."""
    error = {"message": message, "type": "upstream_error", "code": "upstream_disconnected", "param": None}
    return sse({"error": error})


def record_usage(guard: Guard, payload: Any) -> None:
    """Settle on the usage the engine reported in ``payload`` (a chunk or a whole answer), if it did."""
    counts = engine_sse.usage_of(payload, prompt_default=guard.prompt_tokens) if isinstance(payload, dict) else None
    if counts is not None:
        guard.set_usage(*counts)


class SseRelay:
    """The per-stream state: partial event carried between reads, and whether the client wants usage."""

    def __init__(self, guard: Guard, include_usage: bool, model: str = "", kind: Kind = Kind.CHAT) -> None:
        self.guard, self.include_usage, self.model, self.kind = guard, include_usage, model, kind
        self.events = engine_sse.Events()
        self.saw_usage = False
        # The events of the last read passed on as they came (all of the read's output, or at the end of
        # a stream the start of it), and their text fields: content safety screens them, one
        # regular-expression pass for both (StreamedAnswer).
        self.passed: bytes | None = None  # None after a read that was taken event by event
        self.values: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        """The complete events so far, processed; an incomplete tail is kept for the next read."""
        events = self.events
        if b"\r" in data or b"\r" in events.pending:  # sse-starlette's CRLF line ends: as Events normalises them
            self.passed = None
            return self._each(events.feed(data))
        # A read ends wherever the engine's writes were cut (mid-event when the console is busy): its
        # complete events go on now, the rest waits for the next read.
        if events.pending:
            data, events.pending = events.pending + data, b""
        end = data.rfind(b"\n\n") + 2
        if end < 2:
            events.pending = data
            return b""
        if end < len(data):
            data, events.pending = data[:end], data[end:]
        usage_at, done_at = data.find(b'"usage"'), data.find(b"[DONE]")
        if usage_at < 0 and done_at < 0:
            return self._as_read(data)
        # The end of the stream: the events before the first that names usage or [DONE] as read (not a
        # lone blank line before it), the others one by one.
        marked = done_at if usage_at < 0 else usage_at if done_at < 0 else min(usage_at, done_at)
        start = data.rfind(b"\n\n", 0, marked) + 2
        start = start if start > 2 else 0
        self.passed = None
        head = self._as_read(data[:start]) if start else b""
        tail, events.pending = events.pending, b""  # this read's incomplete last event, after these
        out = head + self._each(events.feed(data[start:]))
        events.pending += tail
        return out

    def _as_read(self, data: bytes) -> bytes:
        """Whole events of text, nothing to change (nearly every read): passed on as they are, the text
        events counted in one scan (the fallback count, when the engine sends no usage)."""
        values = engine_sse.TEXT_VALUE.findall(data)
        texts = len(values) - values.count(b"")
        if texts:
            self.guard.first_token()
            self.guard.add_completion_tokens(texts)
        self.passed, self.values = data, values
        return data

    def _each(self, found: list[bytes]) -> bytes:
        return b"".join([out for out in map(self.event, found) if out])

    def flush(self) -> bytes:
        rest = self.events.flush()
        return self.event(rest) if rest else b""

    def event(self, event: bytes) -> bytes:
        if b'"usage"' in event and not any(marker in event for marker in _NULL_USAGE):
            return self._usage_event(event)
        if event == DONE[:-2] and self.include_usage and not self.saw_usage:
            return self._counted_usage() + DONE
        if _TEXT.search(event):
            self.guard.first_token()
            self.guard.add_completion_tokens(1)
        return event + b"\n\n" if event else b""

    def _usage_event(self, event: bytes) -> bytes:
        try:
            payload = json.loads(event.partition(b":")[2])
        except ValueError:
            return event + b"\n\n"
        if not isinstance(payload, dict):
            return event + b"\n\n"
        record_usage(self.guard, payload)
        self.saw_usage = True
        if self.include_usage:
            return event + b"\n\n"
        if not payload.get("choices"):
            return b""  # the usage-only chunk the client did not ask for
        payload.pop("usage", None)
        if _TEXT.search(event):
            self.guard.first_token()
        return sse(payload)

    def _counted_usage(self) -> bytes:
        """The usage chunk a client asked for and the engine did not send: the gateway's own counts
        (chunks for the completion, the reservation's estimate for the prompt)."""
        prompt, completion = self.guard.prompt_tokens, self.guard.completion_tokens
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        kind = "chat.completion.chunk" if self.kind is Kind.CHAT else "text_completion"
        head = {"id": f"usage-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": self.model}
        return sse({**head, "choices": [], "usage": usage})


async def relay_sse(opened: client.Opened, relay: SseRelay) -> AsyncGenerator[bytes, None]:
    guard = relay.guard
    try:
        # Each read is all the engine sent since the last one (client.reads): when writing to the client
        # was the slower side, what piled up meanwhile goes out in one write and is scanned once.
        async for data in client.reads(opened):
            out = relay.feed(data)
            if out:
                yield out
            await guard.atouch()
    except client.EngineFailure as exc:
        # The engine went away mid-answer: tell the client in-band, the status is already 200.
        logger.warning("upstream stream broke: %s", exc)
        guard.status = UsageStatus.ERROR
        yield error_event(f"The engine stopped answering: {exc.code}.")
        return
    tail = relay.flush()
    if tail:
        yield tail


async def read_whole(opened: client.Opened, guard: Guard) -> bytes:
    """A non-streamed answer, passed on byte for byte; its ``usage`` settles the reservation."""
    body = await client.read_all(opened)
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if isinstance(payload, dict):
        record_usage(guard, payload)
    return body

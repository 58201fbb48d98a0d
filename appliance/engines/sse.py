"""Engines' server-sent event streams: the one framing and chunk parser of the gateway and the chat.

vLLM, llama-server, Ollama's ``/v1`` and llama-cpp-python's server (sse-starlette: ``\\r\\n`` line ends
and ``: ping`` comment lines) all stream OpenAI's ``chat.completion.chunk`` events. The gateway passes
the events on as bytes (``Events`` frames them); the chat reads them as ``Chunk``s (``ChunkReader``). Both
ask for the final usage chunk (``ask_usage``) and count pieces only when the engine sends none.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from appliance.engines.client import Disconnected, EngineFailure, error_message

logger = logging.getLogger(__name__)

# The text fields of OpenAI-style streamed chunks, and their JSON string values (escapes included, quotes
# not): what the gateway counts when an engine sends no usage, and what content safety screens.
TEXT_VALUE = re.compile(rb'"(?:content|reasoning_content|text)":\s*"([^"\\]*(?:\\.[^"\\]*)*)"')

DONE = b"[DONE]"


def ask_usage(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (a streamed request) asking the engine for its usage chunk before ``[DONE]``."""
    return {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}


class Events:
    """Complete events out of successive reads; an incomplete tail waits for the next read."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The events completed by ``data``, each without its blank line."""
        pending = self.pending + data if self.pending else data
        if b"\r" in pending:  # sse-starlette ends lines with CRLF
            pending = pending.replace(b"\r\n", b"\n")
        *events, self.pending = pending.split(b"\n\n")
        return events

    def flush(self) -> bytes:
        """What is left at the end of the stream: a last event without its blank line, if any."""
        rest, self.pending = self.pending, b""
        return rest.rstrip(b"\n") if rest.strip() else b""


def data_of(event: bytes) -> bytes | None:
    """The ``data`` field of an event (its ``data:`` lines joined), None for a comment or an empty event."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[5:].removeprefix(b" ")
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


@dataclass(frozen=True)
class Chunk:
    """One parsed event of a chat stream."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None  # (prompt tokens, completion tokens)


def usage_of(payload: dict[str, Any], prompt_default: int = 0) -> tuple[int, int] | None:
    """(prompt, completion) tokens of the ``usage`` an engine reported in a chunk or a whole answer."""
    usage = payload.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        prompt = usage.get("prompt_tokens")
        return (prompt if isinstance(prompt, int) else prompt_default), usage["completion_tokens"]
    return None


def parse_chunk(data: bytes) -> Chunk | None:
    """One event's data as a chunk; an ``error`` event raises ``EngineFailure`` with the engine's message."""
    try:
        obj = json.loads(data)
    except ValueError:
        logger.warning("engine: unparsable stream event %r", data[:200])
        return None
    if not isinstance(obj, dict):
        return None
    if obj.get("error"):
        raise EngineFailure(error_message(data) or "the engine reported an error")
    choices = obj.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    content = delta.get("content") or ""
    return Chunk(
        content=content if isinstance(content, str) else "",
        reasoning=reasoning if isinstance(reasoning, str) else "",
        finish_reason=choice.get("finish_reason"),
        usage=usage_of(obj),
    )


class ChunkReader:
    """An engine's stream as chunks, to ``[DONE]``: ``await read()`` gives the chunks of the next read of the
    stream together (a loaded engine's reads carry several events, and each step of a consumer's loop costs
    more than parsing one), None at the end. A stream cut before the answer ended raises ``Disconnected``;
    a silence longer than the read timeout ``TimedOut`` (from ``read_some``).

    Cancelling ``read`` loses nothing when ``read_some`` is cancellation-safe (``client.read_some``: what
    arrives meanwhile waits in the response's buffer; events are parsed between reads, never across an
    await), so a caller may cancel a read (a timeout, an alarm) rather than read in a task of its own."""

    __slots__ = ("_cut", "_ended", "_events", "_finished", "_read_some")

    def __init__(self, read_some: Callable[[], Awaitable[bytes]]) -> None:
        self._read_some = read_some  # the bytes that arrived since the last call, b"" at the end of the body
        self._events = Events()
        self._finished = False  # a chunk carried a finish reason
        self._ended = False
        self._cut = False

    async def read(self) -> list[Chunk] | None:
        while not self._ended:
            data = await self._read_some()
            found = self._parse(data) if data else self._last()
            if found:
                return found
        if self._cut:
            raise Disconnected("the stream ended before the answer did")
        return None

    def _parse(self, data: bytes) -> list[Chunk]:
        found: list[Chunk] = []
        for event in self._events.feed(data):
            payload = data_of(event)
            if payload is None:
                continue  # comments (": ping"), other fields, stray blank lines
            if payload.strip() == DONE:
                self._ended = True
                break
            chunk = parse_chunk(payload)
            if chunk is not None:
                self._finished = self._finished or chunk.finish_reason is not None
                found.append(chunk)
        return found

    def _last(self) -> list[Chunk]:
        """The body ended: a last event without its blank line, if any; cut if no chunk finished the answer."""
        self._ended = True
        last = data_of(self._events.flush())
        if last is not None and last.strip() == DONE:
            return []
        chunk = parse_chunk(last) if last else None
        if chunk is not None:
            self._finished = self._finished or chunk.finish_reason is not None
        self._cut = not self._finished
        return [chunk] if chunk is not None else []

"""A scripted OpenAI-compatible engine on 127.0.0.1, in a thread of the test process.

Each ``POST /v1/chat/completions`` plays the next :class:`Script` (or the default one): reasoning
deltas, content deltas, pauses, an abrupt disconnect, an HTTP error. Responses are chunked
HTTP/1.1 server-sent events, optionally in sse-starlette's dialect (``\\r\\n`` and ``: ping``
lines) as llama-cpp-python's server sends them. ``disconnected`` is set when a client goes away
before the end of its stream, which is how a test proves the console closed its request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Script:
    content: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    reasoning: list[str] = field(default_factory=list)  # sent as reasoning_content before the content
    delay: float = 0.0  # between chunks
    first_delay: float = 0.0
    fail_after: int | None = None  # close the connection abruptly after this many chunks
    status: int = 200
    usage: bool = True
    finish_reason: str = "stop"
    starlette: bool = False  # "\r\n" line ends and ": ping" comments


@dataclass
class Seen:
    bodies: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)  # each request's X-Request-ID
    completed: int = 0
    disconnects: int = 0


class FakeEngine:
    def __init__(self, model: str = "fake-model") -> None:
        self.model = model
        self.default = Script()
        self.api_key = ""  # when set, requests without `Authorization: Bearer <it>` get a 401, as from vLLM
        self.scripts: list[Script] = []
        self.seen = Seen()
        self.disconnected = threading.Event()
        self.started_stream = threading.Event()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-engine", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeEngine:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def reset(self) -> None:
        self.default, self.scripts, self.seen, self.api_key = Script(), [], Seen(), ""
        self.disconnected.clear()
        self.started_stream.clear()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.seen.authorizations.append(headers.get("authorization", ""))
                self.seen.request_ids.append(headers.get("x-request-id", ""))
                if self.api_key and headers.get("authorization") != f"Bearer {self.api_key}":
                    await self._json(writer, 401, {"error": {"message": "invalid api key"}})
                elif method == "GET" and path == "/v1/models":
                    await self._json(writer, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
                elif method == "POST" and path == "/v1/chat/completions":
                    self.seen.bodies.append(json.loads(body))
                    await self._stream(reader, writer, self.scripts.pop(0) if self.scripts else self.default)
                    break  # the stream said "Connection: close": the next request comes on a new connection
                else:
                    await self._json(writer, 404, {"error": {"message": "not found"}})
        writer.close()

    async def _json(self, writer: asyncio.StreamWriter, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()

    def _chunks(self, script: Script) -> list[dict[str, Any]]:
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model}
        deltas: list[dict[str, Any]] = [{"role": "assistant"}]
        deltas += [{"reasoning_content": r, "content": None} for r in script.reasoning]
        deltas += [{"content": c} for c in script.content]
        chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": script.finish_reason}]})
        if script.usage:
            count = len(script.reasoning) + len(script.content)
            usage = {"prompt_tokens": 11, "completion_tokens": count, "total_tokens": 11 + count}
            chunks.append({**base, "choices": [], "usage": usage})
        return chunks

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script) -> None:
        if script.status != 200:
            await self._json(writer, script.status, {"error": {"message": f"engine says {script.status}"}})
            return
        # Connection: close, as the stream's reader below would take the first byte of a next request on it.
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
        writer.write(head + b"Connection: close\r\n\r\n")
        await writer.drain()
        self.started_stream.set()
        gone = asyncio.ensure_future(reader.read(1))  # EOF: the client closed the connection
        end = "\r\n" if script.starlette else "\n"
        events = [f"data: {json.dumps(c)}{end}{end}" for c in self._chunks(script)] + [f"data: [DONE]{end}{end}"]
        for index, event in enumerate(events):
            pause = script.first_delay if index == 0 else script.delay
            if pause and (await asyncio.wait({gone}, timeout=pause))[0]:
                return self._went_away()
            if gone.done():
                return self._went_away()
            if script.fail_after is not None and index > script.fail_after:
                writer.transport.abort()
                return
            if script.starlette and index == 1:
                event = f": ping - 2025-01-01 00:00:00{end}{end}" + event
            data = event.encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.seen.completed += 1
        gone.cancel()

    def _went_away(self) -> None:
        self.seen.disconnects += 1
        self.disconnected.set()

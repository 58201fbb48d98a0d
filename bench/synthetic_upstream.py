"""A synthetic inference engine: OpenAI-compatible `/v1` and Ollama-native `/api` routes, no model.

It streams N tokens as fast as the socket takes them (or paced by a per-token delay), so the
component in front of it -- the console's gateway, LiteLLM -- is what a benchmark measures. Standard
library only (asyncio streams, HTTP/1.1 with keep-alive and chunked responses), so the benchmark
and the tests need nothing beyond the project's own dependencies.

Per-request controls ride in the request body, which the gateway passes through untouched:
``max_tokens`` is the number of tokens produced (``options.num_predict`` on the Ollama routes) and
an optional ``"synthetic": {"delay_ms": 5, "first_delay_ms": 100, "status": 500}`` paces or fails
one request. Server-wide defaults are the constructor's arguments. ``stats`` counts what the
server saw, including clients that went away mid-stream (``disconnects``), which is how a test
proves the gateway closed its upstream request.

Run standalone: ``python bench/synthetic_upstream.py --port 9100 --tokens 256``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

TOKEN = " tok"


@dataclass
class Stats:
    requests: int = 0
    streams: int = 0
    completed: int = 0
    disconnects: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@dataclass
class Behaviour:
    tokens: int
    delay: float
    first_delay: float
    status: int


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Unavailable",
}


class SyntheticUpstream:
    """One server on ``host:port`` (port 0 picks a free one; read ``.port`` after start)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model: str = "synthetic",
        tokens: int = 16,
        token_delay: float = 0.0,
        first_delay: float = 0.0,
        keep_bodies: bool = True,
        api_key: str = "",
    ) -> None:
        self.host, self.port, self.model = host, port, model
        # Like vLLM started with --api-key: /v1 and /api routes want `Authorization: Bearer <key>`.
        self.api_key = api_key
        self.tokens, self.token_delay, self.first_delay = tokens, token_delay, first_delay
        self.keep_bodies = keep_bodies
        self.stats = Stats()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> SyntheticUpstream:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):  # kept-alive connections would hold wait_closed() forever
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def start_in_thread(self) -> SyntheticUpstream:
        """Serve from a daemon thread with its own event loop (tests read ``stats`` from outside)."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"synthetic-{self.model}", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("synthetic upstream did not start")
        return self

    def stop_thread(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- HTTP/1.1 -------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        length = int(headers.get("content-length", "0"))
        raw = await reader.readexactly(length) if length else b""
        self.stats.requests += 1
        self.stats.paths.append(path)
        try:
            route = path.split("?", 1)[0]
            if (
                self.api_key
                and route not in ("/", "/health")
                and headers.get("authorization") != f"Bearer {self.api_key}"
            ):
                raise HttpError(401, "invalid api key")
            await self._route(method, route, raw, writer)
        except HttpError as exc:
            await self._send_json(writer, exc.status, {"error": {"message": str(exc), "type": "synthetic"}})
        return headers.get("connection", "").lower() != "close"

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()

    async def _route(self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter) -> None:
        if method == "GET" and path in ("/", "/health"):
            return await self._send_json(writer, 200, "Ollama is running" if path == "/" else {"status": "ok"})
        if method == "GET" and path == "/v1/models":
            return await self._send_json(writer, 200, {"object": "list", "data": [{"id": self.model}]})
        if method != "POST" or path not in _GENERATORS:
            raise HttpError(404, f"no route {method} {path}")
        body = json.loads(raw or b"{}")
        if self.keep_bodies:
            self.stats.bodies.append(body)
        behaviour = self._behaviour(body, path)
        if behaviour.status != 200:
            raise HttpError(behaviour.status, "synthetic failure")
        if behaviour.first_delay:
            await asyncio.sleep(behaviour.first_delay)
        dialect = _GENERATORS[path]
        if body.get("stream", path.startswith("/api/")):
            return await self._stream(writer, dialect(self, body, behaviour), path.startswith("/api/"))
        return await self._send_json(writer, 200, dialect.whole(self, body, behaviour))

    def _behaviour(self, body: dict[str, Any], path: str) -> Behaviour:
        extra = body.get("synthetic") or {}
        if path.startswith("/api/"):
            tokens = (body.get("options") or {}).get("num_predict")
        else:
            tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        return Behaviour(
            tokens=int(tokens if tokens is not None else self.tokens),
            delay=float(extra.get("delay_ms", self.token_delay * 1000)) / 1000,
            first_delay=float(extra.get("first_delay_ms", self.first_delay * 1000)) / 1000,
            status=int(extra.get("status", 200)),
        )

    async def _stream(self, writer: asyncio.StreamWriter, frames: Any, ndjson: bool) -> None:
        kind = "application/x-ndjson" if ndjson else "text/event-stream"
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        self.stats.streams += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            async for frame in frames:
                writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            self.stats.completed += 1
        except ConnectionError:
            self.stats.disconnects += 1
            raise
        except RuntimeError:  # uvloop's word for a write to a connection the client closed
            if not writer.is_closing():
                raise
            self.stats.disconnects += 1
            raise ConnectionResetError("the client closed the connection") from None
        finally:
            self.stats.in_flight -= 1


async def _paced(frames: list[bytes], middle: bytes, count: int, delay: float, tail: list[bytes]) -> Any:
    """Yield the head frames, ``count`` copies of ``middle`` (sleeping ``delay`` between), then the tail."""
    for frame in frames:
        yield frame
    for _ in range(count):
        if delay:
            await asyncio.sleep(delay)
        yield middle
    for frame in tail:
        yield frame


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _prompt_tokens(body: dict[str, Any]) -> int:
    text = json.dumps(body.get("messages") or body.get("prompt") or "")
    return max(1, len(text) // 4)


class _OpenAIChat:
    object_name, path_kind = "chat.completion", "chat"

    def __call__(self, server: SyntheticUpstream, body: dict[str, Any], b: Behaviour) -> Any:
        ident, created = f"chatcmpl-synthetic-{time.monotonic_ns()}", int(time.time())
        common = {"id": ident, "object": f"{self.object_name}.chunk", "created": created, "model": server.model}

        def event(payload: dict[str, Any]) -> bytes:
            return b"data: " + json.dumps({**common, **payload}, separators=(",", ":")).encode() + b"\n\n"

        head = [event({"choices": [self.choice_delta(role=True)]})] if self.path_kind == "chat" else []
        tail = [event({"choices": [self.choice_delta(finish="length" if b.tokens else "stop")]})]
        if (body.get("stream_options") or {}).get("include_usage"):
            tail.append(event({"choices": [], "usage": _usage(_prompt_tokens(body), b.tokens)}))
        tail.append(b"data: [DONE]\n\n")
        return _paced(head, event({"choices": [self.choice_delta(text=TOKEN)]}), b.tokens, b.delay, tail)

    def choice_delta(self, *, role: bool = False, text: str | None = None, finish: str | None = None) -> Any:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "finish_reason": finish}

    def whole(self, server: SyntheticUpstream, body: dict[str, Any], b: Behaviour) -> dict[str, Any]:
        text = TOKEN * b.tokens
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
        choice["finish_reason"] = "length"
        return {
            "id": f"chatcmpl-synthetic-{time.monotonic_ns()}",
            "object": self.object_name,
            "created": int(time.time()),
            "model": server.model,
            "choices": [choice],
            "usage": _usage(_prompt_tokens(body), b.tokens),
        }


class _OpenAICompletion(_OpenAIChat):
    object_name, path_kind = "text_completion", "completion"

    def choice_delta(self, *, role: bool = False, text: str | None = None, finish: str | None = None) -> Any:
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

    def whole(self, server: SyntheticUpstream, body: dict[str, Any], b: Behaviour) -> dict[str, Any]:
        result = super().whole(server, body, b)
        result["choices"] = [{"index": 0, "text": TOKEN * b.tokens, "logprobs": None, "finish_reason": "length"}]
        return result


class _OllamaDialect:
    """`/api/chat` and `/api/generate`: NDJSON lines, counts in the final ``done`` line (docs/api.md)."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat

    def piece(self, server: SyntheticUpstream, text: str, thinking: str | None = None) -> dict[str, Any]:
        line: dict[str, Any] = {"model": server.model, "created_at": "2025-01-01T00:00:00Z", "done": False}
        if self.chat:
            line["message"] = {"role": "assistant", "content": text}
            if thinking is not None:
                line["message"]["thinking"] = thinking
        else:
            line["response"] = text
            if thinking is not None:
                line["thinking"] = thinking
        return line

    def final(self, server: SyntheticUpstream, body: dict[str, Any], b: Behaviour, text: str) -> dict[str, Any]:
        line = self.piece(server, text)
        counts = {"prompt_eval_count": _prompt_tokens(body), "eval_count": b.tokens, "total_duration": 1000}
        line.update(done=True, done_reason="length" if b.tokens else "stop", **counts)
        return line

    def __call__(self, server: SyntheticUpstream, body: dict[str, Any], b: Behaviour) -> Any:
        def line(obj: dict[str, Any]) -> bytes:
            return json.dumps(obj, separators=(",", ":")).encode() + b"\n"

        head = [line(self.piece(server, "", thinking="hmm"))] if body.get("think") else []
        tail = [line(self.final(server, body, b, ""))]
        return _paced(head, line(self.piece(server, TOKEN)), b.tokens, b.delay, tail)

    def whole(self, server: SyntheticUpstream, body: dict[str, Any], b: Behaviour) -> dict[str, Any]:
        result = self.final(server, body, b, TOKEN * b.tokens)
        if body.get("think"):
            if self.chat:
                result["message"]["thinking"] = "hmm"
            else:
                result["thinking"] = "hmm"
        return result


_GENERATORS: dict[str, Any] = {
    "/v1/chat/completions": _OpenAIChat(),
    "/v1/completions": _OpenAICompletion(),
    "/api/chat": _OllamaDialect(chat=True),
    "/api/generate": _OllamaDialect(chat=False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--model", default="synthetic")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    args = parser.parse_args()

    async def serve() -> None:
        server = SyntheticUpstream(
            args.host,
            args.port,
            model=args.model,
            tokens=args.tokens,
            token_delay=args.token_delay_ms / 1000,
            keep_bodies=False,
        )
        await server.start()
        print(f"synthetic upstream on {server.base_url}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()

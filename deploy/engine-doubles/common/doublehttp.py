"""HTTP/1.1 plumbing shared by the engine doubles (stdlib only): bodies by Content-Length or chunked,
JSON answers, and chunked streaming as Go's net/http and uvicorn send it.

The doubles speak an engine's documented API; they run no model. See docs/engines.md.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Generated text: the same words every time, so a test can assert on what it gets back.
WORDS = (
    "Hello! This answer comes from a protocol double of the engine: it speaks the engine's API "
    "faithfully but runs no model, so the words are always these ones, in this order, until the "
    "token limit or the end of this text."
).split(" ")


def count_tokens(text: str) -> int:
    """A stand-in tokenizer: whitespace-separated words (a real engine uses the model's vocabulary)."""
    return len(text.split())


def generate(max_tokens: int | None) -> tuple[list[str], str]:
    """The pieces of a deterministic answer (each a 'token' with its leading space) and why it ended."""
    limit = len(WORDS) if max_tokens is None or max_tokens < 0 else max_tokens
    pieces = [word if i == 0 else " " + word for i, word in enumerate(WORDS[:limit])]
    return pieces, "length" if limit < len(WORDS) else "stop"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "engine-double"

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self.read_chunks())
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def read_chunks(self) -> Iterable[bytes]:
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()  # the blank line after the last chunk (no trailers sent by clients)
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def body_chunks(self, block: int = 1 << 20) -> Iterable[bytes]:
        """The request body piece by piece, so a multi-gigabyte upload never sits in memory."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            yield from self.read_chunks()
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            piece = self.rfile.read(min(block, left))
            if not piece:
                return
            left -= len(piece)
            yield piece

    def send(self, status: int, body: bytes = b"", content_type: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        if body or status not in (200, 201):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any) -> None:
        self.send(status, json.dumps(payload, ensure_ascii=False).encode())

    def send_text(self, status: int, text: str) -> None:
        self.send(status, text.encode(), "text/plain; charset=utf-8")

    def start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request on stdout, as the engines log them: `docker logs` shows what the console asked.
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        print(f"[{self.server_version}] {stamp} | {self.client_address[0]} | {format % args}", flush=True)


def serve(handler: type[Handler], host: str, port: int, banner: str) -> None:
    # PID 1 in a container ignores SIGTERM unless it handles it: exit at once, as the engines do on `docker stop`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    print(banner, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)

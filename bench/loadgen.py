"""A small HTTP/1.1 load generator on raw asyncio streams, so the client costs little CPU beside the server.

Each worker keeps one connection alive and sends its requests one after another; ``run`` starts
``concurrency`` workers. For a streamed answer it records the time to the first event carrying
text and counts such events (one token each on every server measured here).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

_TEXT = re.compile(rb'"(?:content|text)":\s*"(?!")')


@dataclass
class Sample:
    status: int
    latency: float  # seconds, request written → last byte
    ttft: float | None  # seconds to the first text event (streams)
    tokens: int


@dataclass
class Outcome:
    label: str
    concurrency: int
    wall: float
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.status == 200]

    @property
    def tokens_per_second(self) -> float:
        return sum(s.tokens for s in self.ok) / self.wall if self.wall else 0.0

    @property
    def requests_per_second(self) -> float:
        return len(self.ok) / self.wall if self.wall else 0.0

    def percentile(self, name: str, q: float) -> float:
        values = sorted(v for s in self.ok if (v := getattr(s, name)) is not None)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))]

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "concurrency": self.concurrency,
            "requests": len(self.samples),
            "errors": len(self.samples) - len(self.ok) + len(self.errors),
            "tokens_per_s": round(self.tokens_per_second),
            "requests_per_s": round(self.requests_per_second, 1),
            "ttft_p50_ms": round(self.percentile("ttft", 0.5) * 1000, 2),
            "ttft_p99_ms": round(self.percentile("ttft", 0.99) * 1000, 2),
            "latency_p50_ms": round(self.percentile("latency", 0.5) * 1000, 2),
            "latency_p99_ms": round(self.percentile("latency", 0.99) * 1000, 2),
            "tokens_median": statistics.median([s.tokens for s in self.ok]) if self.ok else 0,
        }


def request_bytes(host: str, port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(payload)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    return status, headers


class _Counter:
    def __init__(self, started: float) -> None:
        self.started, self.pending, self.tokens = started, b"", 0
        self.ttft: float | None = None

    def feed(self, data: bytes) -> None:
        *events, self.pending = (self.pending + data).split(b"\n\n")
        for event in events:
            if _TEXT.search(event):
                self.tokens += 1
                if self.ttft is None:
                    self.ttft = time.perf_counter() - self.started


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], counter: _Counter) -> None:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            counter.feed(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get("content-length", "0"))
    data = await reader.readexactly(length) if length else await reader.read()
    counter.feed(data + b"\n\n")


async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[Sample, bool]:
    """One request on an open connection; the flag says whether the connection may be reused."""
    started = time.perf_counter()
    writer.write(raw)
    status, headers = await _read_head(reader)
    counter = _Counter(started)
    await _read_body(reader, headers, counter)
    sample = Sample(status, time.perf_counter() - started, counter.ttft, counter.tokens)
    return sample, headers.get("connection", "").lower() != "close"


async def _worker(
    host: str,
    port: int,
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    raw: bytes,
    deadline: float,
    outcome: Outcome,
    tls: ssl.SSLContext | None = None,
) -> None:
    reader: asyncio.StreamReader | None
    writer: asyncio.StreamWriter | None
    reader, writer = connection
    while time.perf_counter() < deadline:
        try:
            if reader is None or writer is None:
                reader, writer = await asyncio.open_connection(host, port, ssl=tls)
            sample, reusable = await one(reader, writer, raw)
            outcome.samples.append(sample)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            outcome.errors.append(f"{type(exc).__name__}: {exc}")
            reusable = False
        if not reusable and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run(
    label: str, host: str, port: int, raw: bytes, *, concurrency: int, seconds: float, tls: ssl.SSLContext | None = None
) -> Outcome:
    """``concurrency`` workers send requests back to back for ``seconds``; requests in flight then finish.

    Connections are opened before the clock starts, so a full accept queue (a server's listen backlog)
    does not show up as seconds of SYN retries in the first requests' latency; nor do TLS handshakes
    (``tls``: HTTPS with that context, e.g. to nginx in front of the console).
    """
    outcome = Outcome(label, concurrency, 0.0)
    connections = [await asyncio.open_connection(host, port, ssl=tls) for _ in range(concurrency)]
    started = time.perf_counter()
    workers = [_worker(host, port, c, raw, started + seconds, outcome, tls) for c in connections]
    try:
        await asyncio.wait_for(asyncio.gather(*workers), seconds + 60)
    except TimeoutError:
        outcome.errors.append("requests still in flight a minute after the end")
    outcome.wall = time.perf_counter() - started
    return outcome

"""Which ASGI server runs the console: granian vs uvicorn (uvloop + httptools), the same workers each.

    .venv/bin/python -m bench.server_bench [--servers granian,uvicorn] [--workers 2] [--seconds 5]

The one benchmark that starts ASGI servers itself rather than through ``manage.py serve``: it
exists to choose the server that entry point runs (docs/adr/0002-asgi-server.md). Each server
serves ``console.asgi:application`` with the same environment, database ``console_bench`` and the
same synthetic engine, and gets the same three loads, one after another:

- ``healthz``: small GET requests through Django's handler (``/healthz``), keep-alive;
- ``v1-stream``: streamed ``/v1/chat/completions`` through the gateway (64 tokens, unpaced);
- ``ws-chat``: WebSocket chats (``ws/chat/``), one socket per chat, 32 tokens each, back to back.

Prints one JSON line per server and load, with the machine note first. Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from bench import harness, loadgen, relay_bench, ws_bench

MODEL = "synthetic"


def server_command(server: str, port: int, workers: int) -> list[str]:
    app = "console.asgi:application"
    if server == "uvicorn":
        return [
            *[sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)],
            *["--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--lifespan", "off"],
            *["--no-access-log", "--log-level", "warning"],
        ]
    if server == "granian":
        return [
            *[sys.executable, "-m", "granian", "--interface", "asginl", "--host", "127.0.0.1", "--port", str(port)],
            *["--workers", str(workers), "--loop", "uvloop", "--log-level", "warning", "--no-access-log", app],
        ]
    raise SystemExit(f"unknown server {server}")


def get_bytes(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


async def loads(port: int, key: str, cookies: list[str], args: argparse.Namespace) -> list[loadgen.Outcome]:
    outcomes = []
    raw = get_bytes(port, "/healthz")
    await loadgen.run("warm-up", "127.0.0.1", port, raw, concurrency=args.concurrency, seconds=1)
    outcomes.append(
        await loadgen.run("healthz", "127.0.0.1", port, raw, concurrency=args.concurrency, seconds=args.seconds)
    )
    body = relay_bench.chat(MODEL, 64)
    raw = loadgen.request_bytes("127.0.0.1", port, "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"})
    await loadgen.run("warm-up", "127.0.0.1", port, raw, concurrency=args.concurrency, seconds=1)
    outcomes.append(
        await loadgen.run("v1-stream", "127.0.0.1", port, raw, concurrency=args.concurrency, seconds=args.seconds)
    )
    ws = await ws_bench.load(f"ws://127.0.0.1:{port}/ws/chat/", cookies, 32, args.seconds)
    ws.label = "ws-chat"
    outcomes.append(ws)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", default="granian,uvicorn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    print(harness.machine_note(), flush=True)
    harness.prepare_database()
    harness.setup_django()
    harness.flush_quota_redis()
    engine_port = harness.free_port()
    key = harness.bench_key({MODEL: ("vllm", [engine_port])})
    cookies = ws_bench.make_sessions(args.concurrency)
    with harness.synthetic(engine_port, tokens=64):
        for server in args.servers.split(","):
            port = harness.free_port()
            workers = args.workers
            cmd = server_command(server, port, workers)
            with harness.process(f"server-{server}", cmd, f"http://127.0.0.1:{port}/healthz", harness.console_env()):
                time.sleep(2)  # every worker up, not only the first to answer
                for outcome in asyncio.run(loads(port, key, cookies, args)):
                    row: dict[str, Any] = {"server": server, "workers": workers, **outcome.summary()}
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

"""Benchmark 3: many concurrent WebSocket chats held by the console (``manage.py serve``): errors and memory.

    .venv/bin/python -m bench.ws_bench [--chats 1000] [--tokens 32] [--delay-ms 20]

Creates one user and one session per chat (the socket authenticates by session cookie, as a
browser does), starts the synthetic engine (paced: ``--delay-ms`` per token, so the answers
overlap) and the console, opens every socket (``ws/chat/``), then sends one message on each at once
and waits for every answer's ``done``. Prints connection and chat errors, time to the first delta
and to ``done``, and the console's resident memory (server and workers together) idle, with every
socket held, and after the chats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench import harness, loadgen
from bench.synthetic_upstream import TOKEN

MODEL = "synthetic"
CONNECT_BATCH = 40  # handshakes in flight at once, so none waits on a SYN retry


@dataclass
class Chat:
    cookie: str
    socket: ClientConnection | None = None
    first_delta: float | None = None
    done: float | None = None
    errors: list[str] = field(default_factory=list)


def make_sessions(count: int) -> list[str]:
    """``count`` users of department ``bench`` with a logged-in session each; their session keys."""
    from appliance.accounts.models import Department, User
    from tests.served import login_session

    dept = Department.objects.get(code="bench")
    names = [f"ws-bench-{i:05d}" for i in range(count)]
    have = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create([User(username=n, department=dept, password="!") for n in names if n not in have])
    return [login_session(user) for user in User.objects.filter(username__in=names)]


async def open_all(url: str, chats: list[Chat]) -> None:
    async def one(chat: Chat) -> None:
        try:
            chat.socket = await connect(url, additional_headers={"Cookie": f"sessionid={chat.cookie}"}, open_timeout=60)
            ready = json.loads(await asyncio.wait_for(chat.socket.recv(), 60))
            if ready.get("type") != "ready":
                chat.errors.append(f"first message {ready.get('type')}")
        except Exception as exc:
            chat.errors.append(f"connect: {type(exc).__name__}: {exc}")

    for start in range(0, len(chats), CONNECT_BATCH):
        await asyncio.gather(*(one(c) for c in chats[start : start + CONNECT_BATCH]))


async def converse(chat: Chat, tokens: int, started: float, deadline: float) -> None:
    if chat.socket is None:
        return
    try:
        await chat.socket.send(json.dumps({"type": "send", "content": "Hello", "model": MODEL, "max_tokens": tokens}))
        while chat.done is None:
            left = deadline - time.perf_counter()
            if left <= 0:
                chat.errors.append("unfinished: no done within the run's limit")
                return
            event = json.loads(await asyncio.wait_for(chat.socket.recv(), left))
            kind = event.get("type")
            if kind == "delta" and chat.first_delta is None:
                chat.first_delta = time.perf_counter() - started
            elif kind == "done":
                chat.done = time.perf_counter() - started
                message = event.get("message") or {}
                if message.get("status") != "complete":
                    chat.errors.append(f"done with {message.get('status')} ({message.get('error_code')})")
            elif kind == "error":
                chat.errors.append(f"error event: {event.get('code')} {event.get('message')}")
                return
    except Exception as exc:
        chat.errors.append(f"chat: {type(exc).__name__}: {exc}")


async def _one_chat(socket: ClientConnection, tokens: int, limit: float = 30.0) -> loadgen.Sample:
    started = time.perf_counter()
    await socket.send(json.dumps({"type": "send", "content": "Hello", "model": MODEL, "max_tokens": tokens}))
    first, text = None, ""
    while True:
        event = json.loads(await asyncio.wait_for(socket.recv(), limit))
        if event.get("type") == "delta":
            first = first if first is not None else time.perf_counter() - started
            text += event.get("content") or ""
        elif event.get("type") == "done":
            ok = (event.get("message") or {}).get("status") == "complete"
            return loadgen.Sample(200 if ok else 500, time.perf_counter() - started, first, len(text) // len(TOKEN))
        elif event.get("type") == "error":
            return loadgen.Sample(500, time.perf_counter() - started, first, 0)


async def load(url: str, cookies: list[str], tokens: int, seconds: float, warmup: float = 0.0) -> loadgen.Outcome:
    """One socket per cookie, each chatting back to back for ``seconds``: the relay through the chat.
    ``warmup``: seconds of the same load first, not counted in the figures (as the gateway's rows have);
    its failures are reported with the errors."""
    chats = [Chat(cookie) for cookie in cookies]
    await open_all(url, chats)
    outcome = loadgen.Outcome("websocket", len(chats), 0.0)
    outcome.errors += [e for c in chats for e in c.errors]

    async def worker(chat: Chat, until: float, counted: bool) -> None:
        while chat.socket is not None and time.perf_counter() < until:
            try:
                sample = await _one_chat(chat.socket, tokens)
            except Exception as exc:
                outcome.errors.append(f"{type(exc).__name__}: {exc}")
                return
            if counted:
                outcome.samples.append(sample)
            elif sample.status != 200:
                outcome.errors.append(f"warm-up answer with status {sample.status}")

    if warmup > 0:  # as the gateway's rows: a load of its own first, then the counted one
        await asyncio.gather(*(worker(c, time.perf_counter() + warmup, False) for c in chats))
    started = time.perf_counter()
    await asyncio.gather(*(worker(c, started + seconds, True) for c in chats))
    outcome.wall = time.perf_counter() - started
    await asyncio.gather(*(c.socket.close() for c in chats if c.socket is not None))
    return outcome


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1) if ordered else float("nan")


def summary(chats: list[Chat], memory: dict[str, float], wall: float) -> dict[str, Any]:
    errors = [e for c in chats for e in c.errors]
    firsts = [c.first_delta for c in chats if c.first_delta is not None]
    dones = [c.done for c in chats if c.done is not None]
    return {
        "chats": len(chats),
        "connected": sum(1 for c in chats if c.socket is not None),
        "completed": len(dones),
        "errors": len(errors),
        "error_kinds": sorted({e.split(":")[0] for e in errors})[:5],
        "error_counts": dict(Counter(e.split(":")[0] for e in errors).most_common(5)),
        "first_delta_p50_ms": percentile(firsts, 0.5),
        "first_delta_p99_ms": percentile(firsts, 0.99),
        "done_p50_ms": percentile(dones, 0.5),
        "done_p99_ms": percentile(dones, 0.99),
        "wall_s": round(wall, 1),
        **{f"rss_{k}_mib": round(v, 1) for k, v in memory.items()},
        "rss_per_held_socket_kib": round((memory["held"] - memory["idle"]) * 1024 / max(1, len(chats)), 1),
    }


async def run(url: str, chats: list[Chat], tokens: int, pid: int, limit: float) -> dict[str, Any]:
    memory = {"idle": harness.rss_mib(pid)}
    await open_all(url, chats)
    memory["held"] = harness.rss_mib(pid)
    started = time.perf_counter()
    await asyncio.gather(*(converse(c, tokens, started, started + limit) for c in chats))
    wall = time.perf_counter() - started
    memory["after_chats"] = harness.rss_mib(pid)
    per_worker = harness.worker_rss_mib(pid)
    await asyncio.gather(*(c.socket.close() for c in chats if c.socket is not None))
    return {**summary(chats, memory, wall), "workers": len(per_worker), "rss_per_worker_after_mib": per_worker}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--limit", type=float, default=60.0, help="seconds the chats get to finish")
    parser.add_argument("--workers", type=int, default=None, help="the console's worker processes (every core)")
    args = parser.parse_args()
    print(harness.machine_note(), flush=True)
    harness.prepare_database()
    harness.setup_django()
    harness.flush_quota_redis()
    engine_port, gateway_port = harness.free_port(), harness.free_port()
    harness.bench_key({MODEL: ("vllm", [engine_port])})  # the deployment the chats use
    cookies = make_sessions(args.chats)
    chats = [Chat(cookie) for cookie in cookies]
    with (
        harness.synthetic(engine_port, tokens=args.tokens, token_delay_ms=args.delay_ms),
        harness.console(gateway_port, "console-ws", args.workers) as pid,
    ):
        workers = args.workers or "every core"
        print(f"# {args.chats} chats, {args.tokens} tokens each at {args.delay_ms:g} ms a token, workers: {workers}")
        url = f"ws://127.0.0.1:{gateway_port}/ws/chat/"
        result = asyncio.run(run(url, chats, args.tokens, pid, args.limit))
        print(json.dumps(result))


if __name__ == "__main__":
    main()

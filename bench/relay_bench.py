"""Benchmark 1: streaming relay through the gateway vs straight to the engine, side by side in one run.

    .venv/bin/python bench/relay_bench.py [--tokens 128] [--levels 1,64,256] [--delay-ms 0]

Starts the synthetic engine and the console (``manage.py serve``, database ``console_bench``), then for each
concurrency level runs the same bounded load directly against the engine and through ``/v1`` of
the gateway (key check, routing, quota reserve/settle, usage record, relay) -- and with ``--ws``
through the WebSocket chat (one socket per stream, a new conversation per message) -- and prints
tokens/s and time to first token with their ratios. Each path through the console is measured also
through nginx in front of it (deploy/scripts/run-nginx.sh, TLS, as on an appliance), in rows of its
own (``gateway-nginx``, ``websocket-nginx``; ``--no-nginx`` skips them). ``--delay-ms`` paces the engine (a realistic
stream: one event per read); 0 streams as fast as the socket takes it. With a SmolLM2 engine
container running (appliance/llamacpp-cpu), the same comparison runs once against it; without
one, that part is skipped with a message. Loopback only; every run is bounded (~2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import subprocess
from typing import Any

from bench import harness, loadgen, ws_bench

MODEL = "synthetic"
LIVE_IMAGE = "appliance/llamacpp-cpu:latest"
LIVE_MODEL = "smollm2-135m-instruct-q4_1"  # the image's --model_alias
WARM_UP_SECONDS = 1.0  # of the same load before each row through the console, not counted
Target = tuple[int, ssl.SSLContext | None]  # a port, and the TLS context when it speaks HTTPS (nginx)


def chat(model: str, tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": tokens,
        "stream": True,
    }


async def compare(
    engine_port: int, gateways: dict[str, Target], key: str, body: dict[str, Any], level: int, seconds: float
) -> tuple[loadgen.Outcome, ...]:
    """Direct, then each gateway (label → target), the same load for ``seconds`` each."""
    direct = loadgen.request_bytes("127.0.0.1", engine_port, "/v1/chat/completions", body, {})
    outcomes = [await loadgen.run("direct", "127.0.0.1", engine_port, direct, concurrency=level, seconds=seconds)]
    for label, (port, tls) in gateways.items():
        proxied = loadgen.request_bytes(
            "127.0.0.1", port, "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}
        )
        # A short warm-up fills the gateway's key cache and its connection pool.
        await loadgen.run("warm-up", "127.0.0.1", port, proxied, concurrency=level, seconds=WARM_UP_SECONDS, tls=tls)
        outcomes.append(
            await loadgen.run(label, "127.0.0.1", port, proxied, concurrency=level, seconds=seconds, tls=tls)
        )
    return tuple(outcomes)


def report(direct: loadgen.Outcome, *others: loadgen.Outcome) -> dict[str, Any]:
    """Each row, then each other path's tokens/s as a ratio of direct and its added time to first token."""
    d = direct.summary()
    print(json.dumps(d))
    result: dict[str, Any] = {"direct": d}
    for outcome in others:
        row = outcome.summary()
        print(json.dumps(row))
        ratios = {
            "path": row["label"],
            "tokens_per_s_ratio": round(row["tokens_per_s"] / d["tokens_per_s"], 3) if d["tokens_per_s"] else None,
            "ttft_p50_added_ms": round(row["ttft_p50_ms"] - d["ttft_p50_ms"], 2),
            "ttft_p99_added_ms": round(row["ttft_p99_ms"] - d["ttft_p99_ms"], 2),
        }
        print(json.dumps({"concurrency": direct.concurrency, **ratios}))
        result[row["label"]] = {**row, **ratios}
    return result


def live_engine_port() -> int | None:
    """The host port of a running SmolLM2 engine container, if there is one."""
    try:
        out = subprocess.run(
            ["docker", "ps", "--filter", f"ancestor={LIVE_IMAGE}", "--format", "{{.Ports}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for mapping in out.replace(",", "\n").splitlines():  # e.g. 127.0.0.1:18000->8080/tcp
        if "->8080/tcp" in mapping and ":" in mapping:
            return int(mapping.split("->")[0].rsplit(":", 1)[1])
    return None


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--levels", default="1,64,256")
    parser.add_argument("--seconds", type=float, default=8, help="of load per level and target")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--live-tokens", type=int, default=32)
    parser.add_argument("--ws", action="store_true", help="also through the WebSocket chat (ws/chat/)")
    parser.add_argument(
        "--django-path", action="store_true", help="also the gateway through Django's handler (fast path off)"
    )
    parser.add_argument("--no-nginx", action="store_true", help="skip the rows through nginx")
    return parser.parse_args()


def websocket_rows(args: argparse.Namespace, gateways: dict[str, Target], level: int) -> tuple[loadgen.Outcome, ...]:
    """The chat over WebSockets, straight to the console and through nginx (``wss://``)."""
    rows = []
    for label, scheme, gateway in (("websocket", "ws", "gateway"), ("websocket-nginx", "wss", "gateway-nginx")):
        if gateway not in gateways:
            continue
        url = f"{scheme}://127.0.0.1:{gateways[gateway][0]}/ws/chat/"
        # The same short warm-up as the gateway's rows: the console's caches and database connections filled.
        sessions = ws_bench.make_sessions(level)
        outcome = asyncio.run(ws_bench.load(url, sessions, args.tokens, args.seconds, warmup=WARM_UP_SECONDS))
        outcome.label = label
        rows.append(outcome)
    return tuple(rows)


def synthetic_levels(args: argparse.Namespace, engine_port: int, gateways: dict[str, Target], key: str) -> None:
    for level in (int(x) for x in args.levels.split(",")):
        print(f"# synthetic engine, {args.tokens} tokens per stream, delay {args.delay_ms} ms, concurrency {level}")
        rows = asyncio.run(compare(engine_port, gateways, key, chat(MODEL, args.tokens), level, args.seconds))
        if args.ws:
            rows += websocket_rows(args, gateways, level)
        report(*rows)


def live_level(args: argparse.Namespace, live_port: int | None, gateways: dict[str, Target], key: str) -> None:
    if live_port is None:
        print(f"# live SmolLM2: skipped, no running container of {LIVE_IMAGE}")
        return
    print(f"# live SmolLM2 on port {live_port}, {args.live_tokens} tokens per stream, concurrency 1")
    body = chat(LIVE_MODEL, args.live_tokens)
    through = {label: gateways[label] for label in ("gateway", "gateway-nginx") if label in gateways}
    report(*asyncio.run(compare(live_port, through, key, body, 1, args.seconds)))


def main() -> None:
    args = arguments()
    print(harness.machine_note(), flush=True)
    harness.prepare_database()
    harness.setup_django()
    harness.flush_quota_redis()
    engine_port, gateway_port, django_port = harness.free_port(), harness.free_port(), harness.free_port()
    gateways: dict[str, Target] = {"gateway": (gateway_port, None)}
    if args.django_path:
        gateways["gateway-django-path"] = (django_port, None)
    live_port = live_engine_port()
    models = {MODEL: ("vllm", [engine_port]), **({LIVE_MODEL: ("llamacpp", [live_port])} if live_port else {})}
    key = harness.bench_key(models)
    with contextlib.ExitStack() as running:
        running.enter_context(harness.synthetic(engine_port, tokens=args.tokens, token_delay_ms=args.delay_ms))
        running.enter_context(harness.console(gateway_port))
        if not args.no_nginx:
            gateways["gateway-nginx"] = running.enter_context(harness.nginx(gateway_port))
        if args.django_path:
            running.enter_context(
                harness.console(django_port, "console-django-path", APPLIANCE_GATEWAY_FAST_PATH="False")
            )
        synthetic_levels(args, engine_port, gateways, key)
        live_level(args, live_port, gateways, key)


if __name__ == "__main__":
    main()

"""Benchmark 2: the gateway's added latency and throughput vs LiteLLM proxy, same engine, same load.

    .venv/bin/python -m bench.litellm_bench [--concurrency 32] [--seconds 8] [--tokens 16]

Installs ``litellm[proxy]`` (pinned: ``LITELLM``) from PyPI into its own virtual environment under /tmp
(never the project's; reused when it holds that version), and runs, in front of one synthetic engine:
  direct   the engine itself (the floor),
  gateway  the console's ``/v1`` (manage.py serve) (key check, routing, quota reserve/settle, usage record),
  gateway-nginx  the same through nginx in front of it (deploy/scripts/run-nginx.sh, TLS, as on an
           appliance; ``--no-nginx`` skips it),
  litellm  ``litellm --config`` with a master key (no database, so no budgets or spend logs).
Each gets the same streamed and whole chat requests at the same concurrency; the script prints
p50/p99 latency added over direct and requests/s, with the gateway/LiteLLM ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import harness, loadgen

LITELLM_VERSION = "1.106.2"
LITELLM = f"litellm[proxy]=={LITELLM_VERSION}"  # the version the comparison in docs/performance.md names
VENV = Path(os.environ.get("BENCH_LITELLM_VENV", "/tmp/litellm-venv"))
MASTER_KEY = "sk-bench"
MODEL = "synthetic"


def _installed() -> str:
    shown = subprocess.run([str(VENV / "bin" / "pip"), "show", "litellm"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in shown.splitlines() if line.startswith("Version")), "")


def ensure_litellm() -> Path:
    exe = VENV / "bin" / "litellm"
    if not exe.exists() or _installed() != LITELLM_VERSION:
        print(f"# installing {LITELLM} into {VENV} (once)", flush=True)
        started = time.monotonic()
        if not (VENV / "bin" / "pip").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", LITELLM], check=True)
        print(f"# installed in {time.monotonic() - started:.0f} s", flush=True)
    print(f"# litellm {_installed() or '?'}")
    return exe


def litellm_config(engine_port: int) -> Path:
    config = harness.LOG_DIR / "litellm.yaml"
    harness.LOG_DIR.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{engine_port}/v1\n"
        "      api_key: none\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
    )
    return config


def litellm_env() -> dict[str, str]:
    # No model price map download, no telemetry, quiet logs: an air-gapped appliance's settings.
    # The console's DATABASE_URL/REDIS_URL must not reach it: LiteLLM would try to use them.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    return {**env, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}


# label → (port, headers, TLS context when it speaks HTTPS)
Targets = dict[str, tuple[int, dict[str, str], ssl.SSLContext | None]]


async def measure(targets: Targets, body: dict[str, Any], args: Any) -> dict[str, Any]:
    results: dict[str, loadgen.Outcome] = {}
    for label, (port, headers, tls) in targets.items():
        raw = loadgen.request_bytes("127.0.0.1", port, "/v1/chat/completions", body, headers)
        await loadgen.run("warm-up", "127.0.0.1", port, raw, concurrency=args.concurrency, seconds=1, tls=tls)
        results[label] = await loadgen.run(
            label, "127.0.0.1", port, raw, concurrency=args.concurrency, seconds=args.seconds, tls=tls
        )
    return summarise(results)


def summarise(results: dict[str, loadgen.Outcome]) -> dict[str, Any]:
    rows = {label: outcome.summary() for label, outcome in results.items()}
    floor = rows["direct"]
    for row in rows.values():
        row["added_p50_ms"] = round(row["latency_p50_ms"] - floor["latency_p50_ms"], 2)
        row["added_p99_ms"] = round(row["latency_p99_ms"] - floor["latency_p99_ms"], 2)
        print(json.dumps(row))
    gateway, litellm = rows["gateway"], rows["litellm"]
    ratios = {
        "added_p50_gateway_over_litellm": _ratio(gateway["added_p50_ms"], litellm["added_p50_ms"]),
        "added_p99_gateway_over_litellm": _ratio(gateway["added_p99_ms"], litellm["added_p99_ms"]),
        "rps_gateway_over_litellm": _ratio(gateway["requests_per_s"], litellm["requests_per_s"]),
    }
    print(json.dumps(ratios))
    result: dict[str, Any] = {"rows": rows, **ratios}
    if "gateway-nginx" in rows:
        nginx = rows["gateway-nginx"]
        through = {
            "path": "gateway-nginx",
            "added_p50_gateway_over_litellm": _ratio(nginx["added_p50_ms"], litellm["added_p50_ms"]),
            "rps_gateway_over_litellm": _ratio(nginx["requests_per_s"], litellm["requests_per_s"]),
        }
        print(json.dumps(through))
        result["nginx"] = through
    return result


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8, help="of load per target and kind of request")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--no-nginx", action="store_true", help="skip the row through nginx")
    return parser.parse_args()


def both_kinds(args: argparse.Namespace, targets: Targets) -> None:
    for stream in (True, False):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": args.tokens}
        print(
            f"# {'streamed' if stream else 'whole'} chat, {args.tokens} tokens, "
            f"concurrency {args.concurrency}, {args.seconds:g} s of load per target"
        )
        asyncio.run(measure(targets, {**body, "stream": stream}, args))


def main() -> None:
    args = arguments()
    exe = ensure_litellm()
    print(harness.machine_note(), flush=True)
    harness.prepare_database()
    harness.setup_django()
    harness.flush_quota_redis()
    engine_port, gateway_port, litellm_port = harness.free_port(), harness.free_port(), harness.free_port()
    key = harness.bench_key({MODEL: ("vllm", [engine_port])})
    cmd = [str(exe), "--config", str(litellm_config(engine_port)), "--port", str(litellm_port), "--num_workers", "1"]
    litellm = harness.spawn("litellm", cmd, litellm_env())  # starts slowly: in parallel with the rest
    try:
        with contextlib.ExitStack() as running:
            running.enter_context(harness.synthetic(engine_port, tokens=args.tokens))
            running.enter_context(harness.console(gateway_port))
            bearer = {"Authorization": f"Bearer {key}"}
            targets: Targets = {"direct": (engine_port, {}, None), "gateway": (gateway_port, bearer, None)}
            if not args.no_nginx:
                nginx_port, tls = running.enter_context(harness.nginx(gateway_port))
                targets["gateway-nginx"] = (nginx_port, bearer, tls)
            started = time.monotonic()
            harness.wait_http(f"http://127.0.0.1:{litellm_port}/health/liveliness", litellm, "litellm", timeout=240)
            print(f"# litellm ready after a further {time.monotonic() - started:.0f} s")
            targets["litellm"] = (litellm_port, {"Authorization": f"Bearer {MASTER_KEY}"}, None)
            both_kinds(args, targets)
    finally:
        harness.stop(litellm)


if __name__ == "__main__":
    main()

"""Benchmark: the CPU engine's two candidate servers on SmolLM2, side by side in one run.

    .venv/bin/python -m bench.engine_bench [--seconds 20] [--levels 1,4] [--tokens 64]

- llama-server: llama.cpp's C++ server from the prebuilt xllamacpp wheel, started with the same
  `deploy/engine-image/llama_server.py` command line the appliance/llamacpp-cpu image runs.
- llama-cpp-python 0.3.36: `python -m llama_cpp.server`, from a wheel compiled on this machine
  (CPU, x86-64-v3, the recipe the image used before); found under APPLIANCE_CACHE or built with
  `--build-llama-cpp-python` (12-34 min on 2 cores).

Both run on the host (not in containers, so Docker's overhead is the same zero for both), on the same
GGUF, with the same threads (1, half the CPUs) and context (2048), each alone on the machine while measured. Streams
of `--tokens` tokens at each concurrency level for `--seconds`; prints one JSON line per server and
level, then one with the ratios llama-server / llama-cpp-python. Loopback only, bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import harness, loadgen

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("APPLIANCE_CACHE", "/var/cache/appliance"))
MODEL = CACHE / "models" / "smollm2-135m-instruct-q4_1.gguf"
ALIAS = "smollm2-135m-instruct-q4_1"
XLLAMACPP_WHEELS = CACHE / "wheels"
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
LLAMA_CPP_PYTHON_WHEELS = CACHE / "wheels" / "llama-cpp-python"
# The old image recipe's instruction-set baseline (x86-64-v3), so the comparison is with what shipped.
LLAMA_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
    "-DGGML_AVX512=OFF -DGGML_BLAS=OFF -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF"
)
# Half the CPUs of this 2-core machine: the console's default for CPU engines (APPLIANCE_ENGINE_CPU_THREADS).
THREADS = 1


def bench_venv(name: str, *packages: str, find_links: list[Path]) -> Path:
    """A venv under the cache with ``packages`` installed (offline from ``find_links`` where they are)."""
    path = CACHE / "bench-venvs" / name
    python = path / "bin" / "python"
    if not (path / ".complete").exists():
        venv.create(path, with_pip=True, clear=True)
        links = [arg for link in find_links for arg in ("--find-links", str(link))]
        subprocess.run([str(python), "-m", "pip", "install", "-q", *links, *packages], check=True)
        (path / ".complete").touch()
    return python


def llama_cpp_python_wheel(build: bool) -> Path | None:
    found = sorted(glob.glob(str(LLAMA_CPP_PYTHON_WHEELS / "**" / "llama_cpp_python-0.3.36-*.whl"), recursive=True))
    if found:
        return Path(found[-1])
    if not build:
        return None
    out = LLAMA_CPP_PYTHON_WHEELS / "bench"
    env = {**os.environ, "CMAKE_ARGS": LLAMA_CMAKE_ARGS, "FORCE_CMAKE": "1"}
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-binary", "llama-cpp-python", "-w", str(out)]
    subprocess.run([*cmd, LLAMA_CPP_PYTHON], check=True, env=env)
    return llama_cpp_python_wheel(False)


def servers(build: bool) -> dict[str, list[str]]:
    """Name -> command line serving SmolLM2 on {port}."""
    xl = bench_venv("xllamacpp", "xllamacpp==2026.10.11549", find_links=[XLLAMACPP_WHEELS])
    shim = ROOT / "deploy" / "engine-image" / "llama_server.py"
    commands = {
        "llama-server": [
            *(str(xl), str(shim), "-m", str(MODEL), "--alias", ALIAS, "--host", "127.0.0.1", "--port", "{port}"),
            *("-c", "2048", "-t", str(THREADS), "-np", "4", "--no-webui"),
        ],
    }
    wheel = llama_cpp_python_wheel(build)
    if wheel is None:
        print(f"# llama-cpp-python: skipped, no wheel under {LLAMA_CPP_PYTHON_WHEELS} (--build-llama-cpp-python)")
        return commands
    lcp = bench_venv("llama-cpp-python", f"{wheel}[server]", find_links=[wheel.parent])
    commands["llama-cpp-python"] = [str(lcp), "-m", "llama_cpp.server", "--model", str(MODEL)]
    commands["llama-cpp-python"] += ["--model_alias", ALIAS, "--host", "127.0.0.1", "--port", "{port}"]
    commands["llama-cpp-python"] += ["--n_ctx", "2048", "--n_threads", str(THREADS), "--interrupt_requests", "false"]
    return commands


@contextlib.contextmanager
def serving(name: str, command: list[str], port: int) -> Iterator[None]:
    cmd = [part.replace("{port}", str(port)) for part in command]
    with harness.process(name, cmd, f"http://127.0.0.1:{port}/v1/models", env=dict(os.environ)):
        yield


def flags_file() -> None:
    """The shim reads upstream's option table (beside itself in the image; here named by the environment)."""
    from appliance.engines.flags import _LLAMA_SERVER

    table = CACHE / "bench-venvs" / "llama-server-flags.txt"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(_LLAMA_SERVER)
    os.environ["LLAMA_SERVER_FLAGS_FILE"] = str(table)


async def measure(name: str, port: int, levels: list[int], tokens: int, seconds: float) -> dict[int, dict[str, Any]]:
    body = {
        "model": ALIAS,
        "messages": [{"role": "user", "content": "Write a short story about a robot who learns to paint."}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
    }
    # A new connection per request for both: llama-server closes some kept-alive connections after a
    # stream, which a reusing client sees as an error before it reconnects.
    raw = loadgen.request_bytes("127.0.0.1", port, "/v1/chat/completions", body, {"Connection": "close"})
    await loadgen.run(f"{name}-warmup", "127.0.0.1", port, raw, concurrency=1, seconds=2)
    results = {}
    for level in levels:
        outcome = await loadgen.run(name, "127.0.0.1", port, raw, concurrency=level, seconds=seconds)
        results[level] = outcome.summary()
        print(json.dumps({"bench": "engine", "server": name, **results[level]}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--levels", default="1,4")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--build-llama-cpp-python", action="store_true")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    if not MODEL.exists():
        sys.exit(f"{MODEL} is missing: run deploy/engine-image/build.sh --only model")
    print(f"# {harness.machine_note()}")
    flags_file()
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for name, command in servers(args.build_llama_cpp_python).items():
        port = harness.free_port()
        with serving(name, command, port):
            results[name] = asyncio.run(measure(name, port, levels, args.tokens, args.seconds))
    if len(results) < 2:
        return
    for level in levels:
        new, old = results["llama-server"][level], results["llama-cpp-python"][level]
        ratio = {
            "tokens_per_s": round(new["tokens_per_s"] / max(old["tokens_per_s"], 1e-9), 2),
            "ttft_p50": round(new["ttft_p50_ms"] / max(old["ttft_p50_ms"], 1e-9), 2),
        }
        row = {"bench": "engine", "ratio": "llama-server / llama-cpp-python", "concurrency": level, **ratio}
        print(json.dumps(row))


if __name__ == "__main__":
    main()

#!/opt/venv/bin/python
"""`llama-server` for the appliance's CPU engine image: llama.cpp's own C++ server from the xllamacpp wheel.

xllamacpp exposes llama.cpp's `common_params` as `CommonParams` and starts the upstream server (continuous
batching, /health, /v1/*, /tokenize, /metrics) in-process; it ships no command line. This file is that
command line: it reads the upstream `llama-server` arguments (the option table in
llama-server-flags.txt, generated from appliance/engines/flags.py at image build time), so the
console's `llama-server` spec runs unchanged on this image and on ghcr.io/ggml-org/llama.cpp:server.

Like upstream (common/arg.cpp), an unknown option or a missing value is an error that exits with
status 1 before anything loads. A known option this build cannot apply is named on stderr and ignored.
Standard library only: the image has nothing else.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

# Beside this file in the image; elsewhere (bench/engine_bench.py) named by the environment.
FLAGS_FILE = Path(os.environ.get("LLAMA_SERVER_FLAGS_FILE") or Path(__file__).with_name("llama-server-flags.txt"))
NEGATIVE = ("--no-", "-no-")
NEGATIVE_SHORT = frozenset({"-nkvo", "-nocb", "-nr"})
QUIET = frozenset({"--log-disable", "--log-file", "--log-jsonl", "--log-colors", "--verbose", "--verbosity"})
QUIET |= {"--log-prefix", "--log-timestamps", "--offline", "--perf", "--path"}


def read_table(text: str) -> tuple[dict[str, str], set[str]]:
    """Spelling -> first spelling, and the switches, from the table format of appliance/engines/flags.py."""
    canonical: dict[str, str] = {}
    switches: set[str] = set()
    for token in text.split():
        names = token.removeprefix("!").split("|")
        canonical.update(dict.fromkeys(names, names[0]))
        if token.startswith("!"):
            switches.add(names[0])
    return canonical, switches


def parse(argv: list[str], canonical: dict[str, str], switches: set[str]) -> list[tuple[str, str | bool]]:
    """(first spelling, value) pairs; a switch's value is False for its --no- spellings."""
    out: list[tuple[str, str | bool]] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name = canonical.get(token)
        if name is None:
            fail(f"error: invalid argument: {token}")
        if name in switches:
            out.append((name, not (token.startswith(NEGATIVE) or token in NEGATIVE_SHORT)))
            i += 1
            continue
        if i + 1 >= len(argv):
            fail(f'error while handling argument "{token}": expected value for argument')
        out.append((name, argv[i + 1]))
        i += 2
    return out


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr, flush=True)
    print("\nto show complete usage, run with -h", file=sys.stderr, flush=True)
    raise SystemExit(1)


def as_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    return value.lower() in ("1", "on", "true", "enabled")


def setters(xlc: Any) -> dict[str, Callable[[Any, Any], None]]:
    """How each option lands in CommonParams, named as common/arg.cpp names the field it sets."""

    def attr(path: str, cast: Callable[[Any], Any]) -> Callable[[Any, Any], None]:
        def set_(params: Any, value: Any) -> None:
            *parents, leaf = path.split(".")
            target = params
            for part in parents:
                target = getattr(target, part)
            setattr(target, leaf, cast(value))

        return set_

    def gpu_layers(params: Any, value: Any) -> None:
        # "auto" and "all" both mean "as many as fit"; a CPU build offloads nothing whatever the value.
        params.n_gpu_layers = -1 if value in ("auto", "all") else int(value)

    def flash_attn(params: Any, value: Any) -> None:
        kinds = xlc.llama_flash_attn_type
        params.flash_attn_type = {
            "on": kinds.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "off": kinds.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }.get(str(value), kinds.LLAMA_FLASH_ATTN_TYPE_AUTO)

    def timeout(params: Any, value: Any) -> None:
        params.timeout_read = params.timeout_write = int(value)

    def api_key_file(params: Any, value: Any) -> None:
        keys = [line.strip() for line in Path(value).read_text().splitlines() if line.strip()]
        params.api_keys = [*params.api_keys, *keys]

    def csv(value: Any) -> list[str]:
        return [part for part in str(value).split(",") if part]

    return {
        "--model": attr("model.path", str),
        "--alias": attr("model_alias", lambda v: set(csv(v))),
        "--host": attr("hostnames", lambda v: [str(v)]),
        "--port": attr("port", int),
        "--ctx-size": attr("n_ctx", int),
        "--predict": attr("n_predict", int),
        "--batch-size": attr("n_batch", int),
        "--ubatch-size": attr("n_ubatch", int),
        "--keep": attr("n_keep", int),
        "--parallel": attr("n_parallel", int),
        "--threads": attr("cpuparams.n_threads", int),
        "--threads-batch": attr("cpuparams_batch.n_threads", int),
        "--threads-http": attr("n_threads_http", int),
        "--gpu-layers": gpu_layers,
        "--flash-attn": flash_attn,
        "--api-key": attr("api_keys", csv),
        "--api-key-file": api_key_file,
        "--api-prefix": attr("api_prefix", str),
        "--metrics": attr("endpoint_metrics", as_bool),
        "--props": attr("endpoint_props", as_bool),
        "--slots": attr("endpoint_slots", as_bool),
        "--jinja": attr("use_jinja", as_bool),
        "--chat-template": attr("chat_template", str),
        "--cont-batching": attr("cont_batching", as_bool),
        "--kv-unified": attr("kv_unified", as_bool),
        "--context-shift": attr("ctx_shift", as_bool),
        "--cache-prompt": attr("cache_prompt", as_bool),
        "--cache-reuse": attr("n_cache_reuse", int),
        "--warmup": attr("warmup", as_bool),
        "--ui": attr("ui", as_bool),
        "--timeout": timeout,
        "--sleep-idle-seconds": attr("sleep_idle_seconds", int),
        "--slot-prompt-similarity": attr("slot_prompt_similarity", float),
        "--ssl-key-file": attr("ssl_file_key", str),
        "--ssl-cert-file": attr("ssl_file_cert", str),
        "--seed": attr("sampling.seed", int),
        "--temp": attr("sampling.temp", float),
        "--top-k": attr("sampling.top_k", int),
        "--top-p": attr("sampling.top_p", float),
        "--min-p": attr("sampling.min_p", float),
    }


def build_params(xlc: Any, options: list[tuple[str, str | bool]]) -> Any:
    params = xlc.CommonParams()
    # Upstream's defaults where xllamacpp's differ: every interface is the caller's choice, port 8080,
    # and "-np auto" = 4 slots sharing one unified KV cache.
    params.hostnames = ["127.0.0.1"]
    params.port = 8080
    params.n_parallel = 4
    params.kv_unified = True
    table = setters(xlc)
    given = {name for name, _ in options}
    for name, value in options:
        setter = table.get(name)
        if setter is not None:
            try:
                setter(params, value)
            except (TypeError, ValueError) as exc:
                fail(f'error while handling argument "{name}": {exc}')
        elif name not in QUIET:
            print(f"warning: {name} is accepted but not applied by this build", file=sys.stderr, flush=True)
    if "--parallel" in given and "--kv-unified" not in given:
        params.kv_unified = False
    if not params.model.path:
        fail("error: no model given (-m)")
    return params


def main(argv: list[str]) -> None:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("options:", " ".join(sorted(set(read_table(FLAGS_FILE.read_text())[0].values()))))
        return
    canonical, switches = read_table(FLAGS_FILE.read_text())
    options = parse(argv, canonical, switches)
    import xllamacpp as xlc

    params = build_params(xlc, options)
    # As upstream (common/arg.cpp: --api-key reads LLAMA_API_KEY): the console passes the engine key
    # in the environment, which `ps` on the node does not show, rather than on the command line.
    if os.environ.get("LLAMA_API_KEY"):
        params.api_keys = [*params.api_keys, *(k for k in os.environ["LLAMA_API_KEY"].split(",") if k)]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = xlc.Server(params)
    print(f"main: server is listening on {server.listening_address}", file=sys.stderr, flush=True)
    stop.wait()
    print("main: stopping", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

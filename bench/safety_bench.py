"""Benchmark: the streaming relay with a 50,000-word content-safety list vs without one, in one run.

    .venv/bin/python -m bench.safety_bench [--words 50000] [--tokens 128] [--levels 1,64] [--delay-ms 0] [--workers 1]
        [--rounds 2]

Starts the synthetic engine and the console (``manage.py serve``, ``--workers`` processes, one by default so
the figure is one process's ceiling), then two users in two
departments reach the same engine through ``/v1``: one department with a word list of ``--words``
entries (Chinese and English, none of which occurs in the engine's answer: the cost of screening
clean traffic, the common case), one with none. For each concurrency level the two run one after
the other, ``--rounds`` times, the first of each round alternating (without, with; with, without; ...), so
a change in the machine's load hits both; the ratio is of the summed tokens/s, and the median and range
of the rounds' own ratios show how far one round wanders. Since the machine may be shared, each run also
reports the console's CPU time per token (its processes' user + system time over the tokens served).
Also prints how long compiling the list took. ``--words 0`` is the control: both departments without a
list, so the ratio shows the noise of the measurement itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import time
from typing import Any

from bench import harness, loadgen

MODEL = "synthetic"
_CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]


def words(count: int, seed: int = 15) -> list[str]:
    """Half Chinese (2-6 characters), half English-like (5-12 letters): realistic lengths, no " tok"."""
    rng = random.Random(seed)
    found: set[str] = set()
    while len(found) < count:
        if len(found) % 2:
            found.add("".join(rng.choices(_CJK, k=rng.randint(2, 6))))
        else:
            found.add("".join(rng.choices("abcdefghijlmnpqrsuvwxyz", k=rng.randint(5, 12))))
    return sorted(found)


def safety_key(count: int, port: int) -> str:
    """A user in department ``bench-safety`` (its own deployment of the engine) whose list has ``count`` words."""
    from django.db import transaction

    from appliance.accounts.choices import Role
    from appliance.accounts.models import Department, User
    from appliance.gateway.tests.factories import api_key, running_deployment
    from appliance.safety import services
    from appliance.safety.models import WordList

    dept = Department.objects.filter(code="bench-safety").first()
    if dept is None:
        dept = Department.objects.create(code="bench-safety", name="Benchmark (word list)")
        dept.path = f"/{dept.pk}/"
        dept.save(update_fields=["path"])
    user, _ = User.objects.get_or_create(
        username="bench-safety", defaults={"role": Role.DEPARTMENT_ADMIN, "department": dept}
    )
    running_deployment(dept, user, MODEL, [port])
    WordList.objects.filter(department=dept).delete()
    with transaction.atomic():
        created = services.create_list(user, name="bench", department_id=dept.pk)
    services.import_words(user, created.pk, "\n".join(words(count)))
    return api_key(user)


def compile_seconds(department_code: str) -> float:
    from appliance.accounts.models import Department
    from appliance.safety import rules

    rules.clear_cache()
    started = time.perf_counter()
    matcher = rules.matcher_for(Department.objects.get(code=department_code).pk)
    assert matcher is not None
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system time of a process and its descendants (the server's workers) so far."""
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for child in harness.children(pid):
        with contextlib.suppress(OSError):  # a child that ended meanwhile
            total += cpu_seconds(child)
    return total


async def level(
    port: int, pid: int, keys: dict[str, str], body: dict[str, Any], concurrency: int, seconds: float, rounds: int = 2
) -> None:
    raws = {
        label: loadgen.request_bytes("127.0.0.1", port, "/v1/chat/completions", body, {"Authorization": f"Bearer {k}"})
        for label, k in keys.items()
    }
    for label, raw in raws.items():  # fills the key caches, compiles the list in the console process
        await loadgen.run(f"warm-up {label}", "127.0.0.1", port, raw, concurrency=concurrency, seconds=1)
    totals = dict.fromkeys(raws, 0.0)
    per_token: dict[str, list[float]] = {label: [] for label in raws}
    per_round: list[dict[str, float]] = []
    for number in range(rounds):
        # Every other round the other one goes first (without, with; with, without; ...): a run just after
        # another one inherits its tail (cleanups, the scheduler's state), and neither side should always.
        order = list(raws.items())[:: -1 if number % 2 else 1]
        per_round.append({})
        for label, raw in order:
            before = cpu_seconds(pid)
            outcome = await loadgen.run(label, "127.0.0.1", port, raw, concurrency=concurrency, seconds=seconds)
            row = outcome.summary()
            tokens = sum(sample.tokens for sample in outcome.ok)
            row["console_cpu_us_per_token"] = round((cpu_seconds(pid) - before) / max(tokens, 1) * 1e6, 1)
            print(json.dumps(row))
            totals[label] += row["tokens_per_s"]
            per_token[label].append(row["console_cpu_us_per_token"])
            per_round[-1][label] = row["tokens_per_s"]
    without, with_list = totals.values()
    cpu_without, cpu_with = (sum(values) / len(values) for values in per_token.values())
    plain, listed = raws
    pairs = sorted(r[listed] / r[plain] for r in per_round)
    ratios = {
        "tokens_per_s_ratio": round(with_list / without, 3),
        "cpu_per_token_ratio": round(cpu_with / cpu_without, 3),
        # The rounds one by one (with / without in the same round): how much one round's figure wanders here.
        "round_ratio_median": round(statistics.median(pairs), 3),
        "round_ratio_range": [round(pairs[0], 3), round(pairs[-1], 3)],
    }
    print(json.dumps({"concurrency": concurrency, **ratios}))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", type=int, default=50_000)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--levels", default="1,64")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternations (without, with) per level; more average out a busy machine"
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    print(harness.machine_note(), flush=True)
    harness.prepare_database()
    harness.setup_django()
    harness.flush_quota_redis()
    engine_port, gateway_port = harness.free_port(), harness.free_port()
    plain = harness.bench_key({MODEL: ("vllm", [engine_port])})
    listed = safety_key(args.words, engine_port)
    if args.words:
        print(f"# {args.words} words; compiling them took {compile_seconds('bench-safety'):.2f} s", flush=True)
    else:  # both sides without a list: how far apart two identical configurations measure here (the noise)
        print("# --words 0: a control, the second department's list is empty", flush=True)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say something."}], "stream": True,
            "max_tokens": args.tokens}  # fmt: skip
    keys = {"gateway, no list": plain, f"gateway, {args.words}-word list": listed}
    with contextlib.ExitStack() as running:
        running.enter_context(harness.synthetic(engine_port, tokens=args.tokens, token_delay_ms=args.delay_ms))
        pid = running.enter_context(harness.console(gateway_port, "console-safety", args.workers))
        for concurrency in (int(x) for x in args.levels.split(",")):
            print(f"# {args.tokens} tokens per stream, delay {args.delay_ms} ms, concurrency {concurrency}", flush=True)
            asyncio.run(level(gateway_port, pid, keys, body, concurrency, args.seconds, args.rounds))


if __name__ == "__main__":
    main()

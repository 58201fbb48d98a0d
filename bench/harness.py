"""Processes and rows the benchmarks share: a benchmark database, the console as deployed, engines.

The console runs as `make run` starts it (``manage.py serve``: granian, ``CONSOLE_WORKERS`` processes,
MariaDB, Redis, DEBUG off; tests/served.py) against its own database
``console_bench`` and Redis database 12, so a benchmark never touches development or test data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "mysql://root@127.0.0.1:3306/console_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
CONSOLE_ID = "bench"
LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", "/tmp/appliance-bench"))


def console_env(**extra: str) -> dict[str, str]:
    from tests.served import served_env

    env = {
        **served_env(),
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "APPLIANCE_QUOTA_REDIS_URL": REDIS_URL,
        "CONSOLE_ID": CONSOLE_ID,  # prefixes the quota keys: others' keys in the same database stay
        "CONSOLE_ENV": "development",
        "CONSOLE_DEBUG": "False",
        "CONSOLE_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_database() -> None:
    """Create ``console_bench`` if missing and migrate it (seconds when already up to date)."""
    import MySQLdb

    name = DATABASE_URL.rsplit("/", 1)[1]
    conn = MySQLdb.connect(host="127.0.0.1", user="root")
    conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
    conn.close()
    cmd = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(cmd, cwd=ROOT, env=console_env(), check=True)


def setup_django() -> None:
    os.environ.update(console_env())  # the benchmark's database and Redis, whatever the shell had
    import django

    django.setup()


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {LOG_DIR}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a process in its own session (so stopping it stops its children), logging to LOG_DIR."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / f"{name}.log", "wb") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def process(name: str, cmd: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[None]:
    proc = spawn(name, cmd, env)
    try:
        wait_http(ready_url, proc, name)
        yield
    finally:
        stop(proc)


def synthetic(port: int, *, tokens: int = 128, token_delay_ms: float = 0.0) -> contextlib.AbstractContextManager[None]:
    cmd = [sys.executable, "bench/synthetic_upstream.py", "--port", str(port), "--tokens", str(tokens)]
    cmd += ["--token-delay-ms", str(token_delay_ms)]
    return process(f"synthetic-{port}", cmd, f"http://127.0.0.1:{port}/health")


@contextlib.contextmanager
def console(port: int, name: str = "console", workers: int | None = None, **env: str) -> Iterator[int]:
    """The console on ``port`` through its one entry point; yields the pid of the server's main process.
    ``workers``: ``CONSOLE_WORKERS`` (every core unless set)."""
    from tests.served import served_console

    count = workers or int(os.environ.get("CONSOLE_WORKERS") or len(os.sched_getaffinity(0)))
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with served_console(LOG_DIR / f"{name}.log", console_env(**env), workers=count, port=port) as (_url, proc):
        yield proc.pid


@contextlib.contextmanager
def nginx(console_port: int) -> Iterator[tuple[int, ssl.SSLContext]]:
    """deploy/scripts/run-nginx.sh (TLS, as on an appliance) in front of the console on ``console_port``,
    started as the tests start it (tests/served.py); yields its HTTPS port and a context trusting its
    certificate. ``SSL_CERT_FILE`` names the certificate too, for clients that build their own context."""
    from tests.served import served_nginx, trusting

    with served_nginx(LOG_DIR / "nginx", f"http://127.0.0.1:{console_port}") as (url, cert):
        previous = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = str(cert)
        try:
            yield int(url.rsplit(":", 1)[1]), trusting(cert)
        finally:
            if previous is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = previous


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the server's workers), as /proc lists them per thread."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in open(f"/proc/{pid}/task/{task}/children").read().split()]
    return found


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants (the server and its workers), in MiB."""
    total = 0.0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    for child in children(pid):
        with contextlib.suppress(OSError):  # a child that ended meanwhile
            total += rss_mib(child)
    return total


def worker_rss_mib(pid: int) -> list[float]:
    """Resident memory of each child of the server's main process (its workers), in MiB."""
    found = []
    for child in children(pid):
        with contextlib.suppress(OSError):
            found.append(round(rss_mib(child), 1))
    return found


def bench_key(models: dict[str, tuple[str, list[int]]]) -> str:
    """A user in department ``bench`` with running deployments ``{served name: (engine, ports)}``; its key."""
    from appliance.accounts.choices import Role
    from appliance.accounts.models import Department, User
    from appliance.deployments.models import Deployment
    from appliance.gateway.tests.factories import api_key, running_deployment

    dept = Department.objects.filter(code="bench").first()
    if dept is None:
        dept = Department.objects.create(code="bench", name="Benchmark")
        dept.path = f"/{dept.pk}/"
        dept.save(update_fields=["path"])
    user, _ = User.objects.get_or_create(username="bench", defaults={"role": Role.DEPARTMENT_ADMIN, "department": dept})
    Deployment.objects.filter(name__startswith="gw-").delete()
    for name, (engine, ports) in models.items():
        running_deployment(dept, user, name, ports, engine=engine)
    return api_key(user)


def machine_note() -> str:
    """The conditions of a run: the load average and how long a fixed bit of Python takes right now
    (about 10 µs on an idle recent core), since other work on a shared machine skews every figure."""
    import timeit

    loop_us = min(timeit.repeat("sum(range(1000))", number=2000, repeat=3)) / 2000 * 1e6
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"# machine: {os.cpu_count()} cores, load average {load}; sum(range(1000)) takes {loop_us:.1f} µs"


def flush_quota_redis() -> None:
    """Forget the benchmark's own quota counters and queued usage (keys under ``bench:``), nothing else."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{CONSOLE_ID}:*", count=1000))
    if keys:
        client.delete(*keys)

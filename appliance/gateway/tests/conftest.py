"""Real processes for the gateway tests: daphne serving the console against the test database, and
synthetic engines (bench/synthetic_upstream.py) in threads of the test process, whose ``stats``
show what the engine saw.

Quota and usage keys live in Redis database 12 under a prefix of their own per test session (the
quotas app prefixes its keys with ``CONSOLE_ID``), so sessions run side by side by several people
neither see nor drain each other's keys, and a new test database (whose ids start again at 1)
never meets the counters of an old one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.db import connection

from appliance.quotas import limiter
from bench.synthetic_upstream import SyntheticUpstream

ROOT = Path(__file__).resolve().parents[3]
REDIS_URL = os.environ.get("APPLIANCE_GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
CONSOLE_ID = f"gwtest{os.getpid()}"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child: if pytest is killed before its teardown, the kernel stops daphne too."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    db = connection.settings_dict
    return f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/v1/models", timeout=1).status_code == 401:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"daphne did not start: {log.read_text()[-3000:]}")


@contextlib.contextmanager
def _daphne(log: Path, **extra_env: str) -> Iterator[str]:
    """Daphne running console.asgi against the test database; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CONSOLE_ENV": "test",
        "APPLIANCE_QUOTA_REDIS_URL": REDIS_URL,
        "REDIS_URL": REDIS_URL,
        "CONSOLE_ID": CONSOLE_ID,
        "CONSOLE_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "console.asgi:application"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # only a prctl call between fork and exec
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, proc, log)
        yield base_url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def gateway_url(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console as deployed (``/v1/`` on the ASGI fast path); ``…/v1`` is the OpenAI base URL."""
    try:
        with _daphne(tmp_path_factory.mktemp("daphne") / "daphne.log") as base_url:
            yield base_url
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{CONSOLE_ID}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="session")
def django_path_url(gateway_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same views through Django's handler and middleware (``APPLIANCE_GATEWAY_FAST_PATH=False``)."""
    log = tmp_path_factory.mktemp("daphne") / "daphne-django-path.log"
    with _daphne(log, APPLIANCE_GATEWAY_FAST_PATH="False") as base_url:
        yield base_url


@pytest.fixture(autouse=True)
def gateway_redis(settings: Any) -> Iterator[redis.Redis]:
    """This process reads the same quota keys as daphne (to drain usage records, for instance)."""
    settings.APPLIANCE_QUOTA_REDIS_URL = REDIS_URL
    settings.CONSOLE_ID = CONSOLE_ID
    yield limiter.scripts().client


@pytest.fixture
def synthetic() -> Iterator[Callable[..., SyntheticUpstream]]:
    """Start synthetic engines in threads: ``synthetic(tokens=8, token_delay=0.01)``."""
    started: list[SyntheticUpstream] = []

    def start(**kwargs: Any) -> SyntheticUpstream:
        server = SyntheticUpstream(**kwargs).start_in_thread()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop_thread()


def wait_for(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")

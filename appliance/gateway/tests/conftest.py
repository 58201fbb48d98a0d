"""Real processes for the gateway tests: the console as deployed (``manage.py serve``, two worker
processes) against the test database, and synthetic engines (bench/synthetic_upstream.py) in threads
of the test process, whose ``stats`` show what the engine saw.

Quota and usage keys live in Redis database 12 under a prefix of their own per test session (the
quotas app prefixes its keys with ``CONSOLE_ID``), so sessions run side by side by several people
neither see nor drain each other's keys, and a new test database (whose ids start again at 1)
never meets the counters of an old one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from appliance.quotas import limiter
from bench.synthetic_upstream import SyntheticUpstream
from conftest import served_database_url
from tests.served import free_port, served_console, served_env

__all__ = ["free_port", "wait_for"]
REDIS_URL = os.environ.get("APPLIANCE_GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
CONSOLE_ID = f"gwtest{os.getpid()}"


@contextlib.contextmanager
def _console(log: Path, **extra_env: str) -> Iterator[str]:
    """The console as deployed (``manage.py serve``, 2 workers) on the test database; yields its base URL."""
    defaults = {
        "DATABASE_URL": served_database_url(),
        "CONSOLE_ENV": "test",
        "APPLIANCE_QUOTA_REDIS_URL": REDIS_URL,
        "REDIS_URL": REDIS_URL,
        "CONSOLE_ID": CONSOLE_ID,
        "CONSOLE_LOG_LEVEL": "WARNING",
    }
    env = served_env(**{**defaults, **extra_env})  # a caller's values (the live tests' console id) win
    with served_console(log, env) as (base_url, _proc):
        yield base_url


@pytest.fixture(scope="session")
def gateway_url(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console as deployed (``/v1/`` on the ASGI fast path); ``…/v1`` is the OpenAI base URL."""
    try:
        with _console(tmp_path_factory.mktemp("console") / "console.log") as base_url:
            yield base_url
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{CONSOLE_ID}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="session")
def django_path_url(gateway_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same views through Django's handler and middleware (``APPLIANCE_GATEWAY_FAST_PATH=False``)."""
    log = tmp_path_factory.mktemp("console") / "console-django-path.log"
    with _console(log, APPLIANCE_GATEWAY_FAST_PATH="False") as base_url:
        yield base_url


@pytest.fixture(autouse=True)
def gateway_redis(settings: Any) -> Iterator[redis.Redis]:
    """This process reads the same quota keys as the console (to drain usage records, for instance)."""
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

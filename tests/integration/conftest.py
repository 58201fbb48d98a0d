"""Real Celery processes (workers, beat) against the test database, for tests that need them.

The processes get DATABASE_URL pointing at pytest-django's test database (``test_<name>``), so a
test using them must be transactional (``django_db(transaction=True)``): rows it writes are
committed and the workers see them, and vice versa. The broker is a Redis database of its own
(INTEGRATION_BROKER_URL, default redis://127.0.0.1:6379/14), flushed before and after each test.

    def test_something(celery_processes):
        celery_processes.beat(env)
        worker = celery_processes.worker(["default", "node.n1"], env={"APPLIANCE_NODE_NAME": "n1"})
        wait_until(lambda: Node.objects.filter(name="n1").exists(), describe="registration")
        worker.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.served import served_database_url, served_env

BROKER_URL = os.environ.get("INTEGRATION_BROKER_URL", "redis://127.0.0.1:6379/14")
_CELERY = [sys.executable, "-m", "celery", "-A", "workers.celery"]


def wait_until(predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.2, describe: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``describe`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {describe or predicate}")
        time.sleep(interval)


class CeleryProcess:
    """One ``celery`` process in its own session; its output goes to a log file kept for failures."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=settings.BASE_DIR,
                start_new_session=True,
            )
        return self

    def stop(self, timeout: float = 15) -> None:
        """Warm shutdown (SIGTERM), as systemd or Docker stop a worker; SIGKILL if it hangs."""
        self.terminate()
        self.wait(timeout)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """A crash: the whole process group dies at once, with no shutdown handlers."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class CeleryProcesses:
    """Starts workers and beat for one test; everything started is stopped at teardown."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.started: list[CeleryProcess] = []

    def _start(self, name: str, args: list[str], env: dict[str, str] | None) -> CeleryProcess:
        process = CeleryProcess(name, [*_CELERY, *args], {**self.env, **(env or {})}, self.tmp / f"{name}.log")
        self.started.append(process)
        return process.start()

    def worker(self, queues: list[str], *, name: str = "", env: dict[str, str] | None = None) -> CeleryProcess:
        name = name or f"worker-{len(self.started)}"
        args = ["worker", "-Q", ",".join(queues), "-n", f"{name}@%h", "-c", "2", "-l", "info", "--without-mingle"]
        return self._start(name, [*args, "--without-gossip"], env)

    def beat(self, env: dict[str, str] | None = None) -> CeleryProcess:
        args = ["beat", "-s", str(self.tmp / "beat-schedule"), "--max-interval", "1", "-l", "info"]
        return self._start("beat", args, env)

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} -----\n{p.log()[-4000:]}" for p in self.started)

    def stop_all(self, timeout: float = 15) -> None:
        for process in self.started:
            process.terminate()
        for process in self.started:
            process.wait(timeout)


@pytest.fixture
def celery_processes(
    transactional_db: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[CeleryProcesses]:
    if connection.vendor != "mysql":
        pytest.skip("live workers need the MariaDB/MySQL test database (DATABASE_URL=mysql://...)")
    broker = redis.Redis.from_url(BROKER_URL)
    broker.flushdb()
    env = {
        **served_env(),  # as deployed: without the test process's DJANGO_ALLOW_ASYNC_UNSAFE
        "DATABASE_URL": served_database_url(),
        "CONSOLE_ENV": "test",
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "False",
        "PYTHONUNBUFFERED": "1",
    }
    processes = CeleryProcesses(tmp_path, env)
    yield processes
    processes.stop_all()
    broker.flushdb()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(processes.logs())  # shown by pytest with the failure


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

"""Real processes for the live tests: Celery workers (and beat) as subprocesses against the test database,
and the Docker engine. Nothing here is mocked: these are the processes `make run` starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import redis

from tests.served import served_console, served_database_url, served_env

ROOT = Path(__file__).resolve().parents[3]
BROKER_URL = os.environ.get("APPLIANCE_TEST_BROKER_URL", "redis://127.0.0.1:6379/10")
# Several test sessions may run at once on one machine (one Docker engine, one Redis): everything a
# session creates carries its own token, so sessions never consume, reconcile or remove each other's work.
TOKEN = f"{os.getpid() % 100000}"
TEST_CONSOLE_ID = f"itest{TOKEN}"
DEFAULT_QUEUE = f"default-{TEST_CONSOLE_ID}"
_PORT_BASE = 21000 + (os.getpid() % 40) * 100
PORT_RANGE = f"{_PORT_BASE}-{_PORT_BASE + 99}"


def node_name(suffix: str = "1") -> str:
    return f"{TEST_CONSOLE_ID}-node{suffix}"


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def process_env(node: str, **extra: str) -> dict[str, str]:
    # served_env: without the test process's DJANGO_ALLOW_ASYNC_UNSAFE, as these processes run on an appliance.
    env = {
        **served_env(),
        "DATABASE_URL": served_database_url(),
        "CELERY_BROKER_URL": BROKER_URL,
        "CONSOLE_ENV": "test",
        "CONSOLE_ID": TEST_CONSOLE_ID,
        "APPLIANCE_NODE_NAME": node,
        "APPLIANCE_HEARTBEAT_SECONDS": "2",
        "APPLIANCE_RECONCILE_SECONDS": "3",
        "APPLIANCE_LAUNCH_GRACE_SECONDS": "5",
        "APPLIANCE_STOP_GRACE_SECONDS": "3",
        "APPLIANCE_PORT_RANGE": PORT_RANGE,
        "APPLIANCE_DEFAULT_QUEUE": DEFAULT_QUEUE,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("APPLIANCE_SIMULATED_GPUS", None)
    env.update(extra)
    return env


def start_worker(node: str, log_dir: Path, **extra: str) -> subprocess.Popen[bytes]:
    log = open(log_dir / f"worker-{node}-{time.monotonic_ns()}.log", "wb")
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery",
        "worker",
        "-l",
        "info",
        "-Q",
        f"{DEFAULT_QUEUE},node.{node}",
        "-n",
        f"w-{node}@{TEST_CONSOLE_ID}",
        "--concurrency",
        "2",
        "--without-mingle",
        "--without-gossip",
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=process_env(node, **extra), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def start_beat(log_dir: Path) -> subprocess.Popen[bytes]:
    log = open(log_dir / "beat.log", "wb")
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery",
        "beat",
        "-l",
        "info",
        "-s",
        str(log_dir / "beat-schedule"),
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=process_env("beat"), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def purge_broker() -> None:
    """Drop this session's queues only (another session may be using the same Redis database)."""
    client = redis.Redis.from_url(BROKER_URL)
    for key in client.scan_iter(match=f"*{TEST_CONSOLE_ID}*"):
        client.delete(key)


def point_publisher_at_test_broker() -> None:
    """This (pytest) process publishes the tasks services queue; send them to the test broker."""
    from workers.celery import app

    app.conf.update(broker_url=BROKER_URL, task_default_queue=DEFAULT_QUEUE)
    # The connection and producer pools are made lazily from broker_url: drop any made before.
    vars(app)["_pool"] = None
    vars(app.amqp)["_producer_pool"] = None


def remove_test_containers() -> None:
    client = docker.from_env()
    for c in client.containers.list(
        all=True, ignore_removed=True, filters={"label": f"appliance.console={TEST_CONSOLE_ID}"}
    ):
        c.remove(force=True)


@contextmanager
def console_processes(tmp_path: Path, node: str, **extra: str) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    purge_broker()
    point_publisher_at_test_broker()
    remove_test_containers()
    procs = {"worker": start_worker(node, tmp_path, **extra), "beat": start_beat(tmp_path)}
    try:
        yield procs
    finally:
        for proc in procs.values():
            kill(proc)
        remove_test_containers()
        if os.environ.get("APPLIANCE_TEST_SHOW_LOGS"):
            for log in sorted(tmp_path.glob("*.log")):
                print(f"==== {log.name}\n{log.read_text(errors='replace')[-30000:]}")


@contextmanager
def web(tmp_path: Path, node: str, **extra: str) -> Iterator[str]:
    """The console's web side as `make run` starts it (``manage.py serve``, 2 workers) beside
    ``console_processes``: the same database, broker and console id; yields its base URL."""
    with served_console(tmp_path / "web.log", process_env(node, **extra)) as (url, _proc):
        yield url


def engine_image() -> str:
    from appliance.images.catalog import default_image

    return default_image("llamacpp")


def require_engine(settings: Any) -> None:
    """Point the test process at the live processes' console id and ports; fail (not skip) without the image."""
    import pytest

    settings.CONSOLE_ID = TEST_CONSOLE_ID
    low, high = PORT_RANGE.split("-")
    settings.APPLIANCE_PORT_RANGE = (int(low), int(high))
    try:
        docker.from_env().images.get(engine_image())
    except Exception as exc:
        pytest.fail(f"Docker or the engine image is missing ({exc}); run deploy/engine-image/build.sh")

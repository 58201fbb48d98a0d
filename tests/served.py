"""The console started as `make run` starts it (``manage.py serve``: granian, several workers, static files
collected), for the browser and live tests and the benchmarks. Nothing here wraps the application.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
PR_SET_PDEATHSIG = 1
# The test process sets this so Playwright's loop and the ORM can share its thread; a served console
# must fail on a synchronous database call in its event loop, as it would on an appliance.
# PROMETHEUS_MULTIPROC_DIR: the test process's own metrics files; run-console.sh empties the directory it is
# given, which would leave this process counting into deleted files (its metrics test then sees nothing).
NOT_INHERITED = ("DJANGO_ALLOW_ASYNC_UNSAFE", "PROMETHEUS_MULTIPROC_DIR")


def served_database_url() -> str:
    """The test database, as ``DATABASE_URL`` spells it, for the processes a test starts (consoles, workers).

    User and password are percent-escaped: a password holding ``@``, ``:`` or ``/`` would otherwise end
    the URL's user part early and point the process at another host or database.
    """
    from django.db import connection  # here: benchmarks import this module without Django set up

    db = connection.settings_dict
    auth = quote(db["USER"] or "root", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    return f"mysql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child: if pytest is killed before its teardown, the kernel stops the console too."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def login_session(user: Any) -> str:
    """A signed-in session of ``user`` in the database, as the sign-in page makes one; its key (the
    ``sessionid`` cookie a browser would send to the console)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY], session[BACKEND_SESSION_KEY] = str(user.pk), "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return str(session.session_key)


def served_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update({"PYTHONUNBUFFERED": "1", **extra})
    return env


def _started_workers(log: Path) -> int:
    return log.read_text(errors="replace").count("Started worker-") if log.exists() else 0


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, workers: int, timeout: float) -> None:
    """Until /healthz answers and every worker has said it started (a test may need the second one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the console exited ({proc.returncode}): {log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200 and _started_workers(log) >= workers:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the console did not start in {timeout:.0f} s: {log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def served_console(
    log: Path, env: dict[str, str], *, workers: int = 2, port: int | None = None, timeout: float = 180
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``manage.py serve`` on 127.0.0.1 with ``env`` (see ``served_env``); yields its base URL and process.

    The first start after a change to a static file collects them again (seconds); later starts do not.
    """
    port = port or free_port()
    cmd = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(workers)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopping its group stops every worker
            preexec_fn=_die_with_parent,  # only a prctl call between fork and exec
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log, workers, timeout)
        yield url, proc
    except BaseException:
        print(f"==== {log}\n{log.read_text(errors='replace')[-5000:]}")  # shown with the failing test
        raise
    finally:
        stop(proc)


def trusting(cert: Path) -> ssl.SSLContext:
    """A TLS context that trusts the self-signed certificate run-nginx.sh made."""
    return ssl.create_default_context(cafile=str(cert))


@contextlib.contextmanager
def served_nginx(logs: Path, upstream: str) -> Iterator[tuple[str, Path]]:
    """deploy/scripts/run-nginx.sh in front of ``upstream`` (``http://127.0.0.1:PORT``), TLS with the
    certificate it generates; yields the HTTPS base URL and that certificate (to verify against).

    Its prefix is a folder of its own under /tmp that nginx's workers (``nobody`` when started as root)
    may enter, which a test's private tmp_path is not; its logs are copied to ``logs`` at the end.
    """
    prefix = Path(tempfile.mkdtemp(prefix="appliance-nginx-"))
    prefix.chmod(0o755)
    tls_port = free_port()
    env = served_env(
        NGINX_PREFIX=str(prefix),
        NGINX_TLS_PORT=str(tls_port),
        NGINX_HTTP_PORT=str(free_port()),
        CONSOLE_UPSTREAM=upstream.removeprefix("http://"),
    )
    log = prefix / "run-nginx.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["deploy/scripts/run-nginx.sh"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
    url, cert = f"https://127.0.0.1:{tls_port}", prefix / "tls" / "console.crt"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError, OSError):
                if cert.exists() and httpx.get(f"{url}/healthz", verify=trusting(cert), timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield url, cert
    finally:
        stop(proc)
        logs.mkdir(parents=True, exist_ok=True)
        for name in ("run-nginx.log", "error.log", "access.log"):
            with contextlib.suppress(OSError):
                shutil.copy(prefix / name, logs / name)
        shutil.rmtree(prefix, ignore_errors=True)

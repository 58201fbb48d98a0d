"""A test server in a process of its own: started, waited for until it serves, stopped at the end."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def serving(
    cmd: list[str], log: Path, ready: Callable[[], bool], what: str, timeout: float, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` with its output in ``log``, once ``ready()`` holds; its log's tail if it exits or never does."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, **popen)
        try:
            deadline = time.monotonic() + timeout
            while not ready():
                if proc.poll() is not None:
                    raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not serve within {timeout:.0f} s")
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

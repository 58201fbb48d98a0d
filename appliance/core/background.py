"""Work started from a request that must finish even when the request does not wait for it.

asyncio keeps only a weak reference to a task: one nobody holds may be collected before it ends. A task
started here is held until it ends (quota settlements after the answer went out, content-safety hits,
last-use stamps, the cleanup of a stream the client never read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

_running: set[asyncio.Task[Any]] = set()


def start(work: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Task[Any]:
    """Run ``work`` in ``loop`` (the running one unless given), held until it ends."""
    task = (loop or asyncio.get_running_loop()).create_task(work)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task

"""Database work of the asynchronous code (chat sockets, answers) on a small pool of threads that keep
their connections.

Channels' ``database_sync_to_async`` and asgiref's ``sync_to_async`` run every call of a process on one
shared thread by default, and Django opens and closes a connection around each call (``CONN_MAX_AGE``
is 0 under ASGI, where a request's thread does not outlive it). With 64 answers in flight in one worker
that thread was the queue every answer waited in, and a third of its time went to connecting to MySQL
(issue 11, docs/performance.md). Here ``CONSOLE_DB_THREADS`` threads each keep one connection, closed
and opened again after an error or once it is ``DB_THREAD_CONNECTION_SECONDS`` old, so a database that
restarted or dropped an idle connection costs one failed call, as it does a request.

Only code that is safe to run concurrently uses this: each call is one service function that owns its
transaction, as every ``services.py`` function does.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")

DB_THREAD_CONNECTION_SECONDS = 300.0

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_opened = threading.local()


def executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=settings.CONSOLE_DB_THREADS, thread_name_prefix="db")
        return _executor


def _fresh_connections() -> None:
    """Close this thread's connections that failed or are old; the next query opens a new one."""
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        born = getattr(_opened, conn.alias, None) or now
        if conn.errors_occurred or now - born > DB_THREAD_CONNECTION_SECONDS:
            conn.close()
            setattr(_opened, conn.alias, None)


def _note_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            setattr(_opened, conn.alias, None)
        elif getattr(_opened, conn.alias, None) is None:
            setattr(_opened, conn.alias, time.monotonic())


def _in_thread(func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        _fresh_connections()
        try:
            return func(*args, **kwargs)
        finally:
            _note_connections()

    return call


def db(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``func`` (synchronous, using the ORM) as a coroutine function run on the database threads."""
    wrapped = _in_thread(func)

    @functools.wraps(func)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        # The pool is made at the first call, in the worker process (granian forks its workers).
        return await sync_to_async(wrapped, thread_sensitive=False, executor=executor())(*args, **kwargs)

    return call


async def run(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    return await db(func)(*args, **kwargs)

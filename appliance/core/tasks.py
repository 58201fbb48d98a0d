"""Queueing Celery tasks from services: only once the transaction that made the rows commits."""

from __future__ import annotations

import functools
from typing import Any

from celery import Task
from django.db import transaction


def queue_on_commit(task: Task[Any, Any], *args: Any, queue: str, **options: Any) -> None:
    """A task queued before commit could run before its rows exist, or for rows that were rolled back."""
    transaction.on_commit(functools.partial(task.apply_async, args=args, queue=queue, **options))

"""Queueing Celery tasks from services: only once the transaction that made the rows commits.

A task is named by its Celery name (``"deployments.launch_instance"``) where the code that queues it sits
below the app's ``tasks.py`` that defines it: the task's body calls that code, so importing the task object
there would make a cycle. The name is the task's contract anyway: queued messages and beat entries carry it.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Task, current_app
from django.db import transaction


def task_named(name: str) -> Task[Any, Any]:
    """The registered task called ``name``; the apps' ``tasks.py`` are imported the first time one is missing
    (a worker imports them at start-up, a web process only when it first queues a task)."""
    if name not in current_app.tasks:
        current_app.autodiscover_tasks(force=True)
    return current_app.tasks[name]


def queue_on_commit(task: Task[Any, Any] | str, *args: Any, queue: str, **options: Any) -> None:
    """A task queued before commit could run before its rows exist, or for rows that were rolled back."""
    found = task_named(task) if isinstance(task, str) else task
    transaction.on_commit(functools.partial(found.apply_async, args=args, queue=queue, **options))

"""The Celery app. Each node's worker consumes the shared queue and its own ``node.<name>`` queue.

Tasks live with their app, in ``appliance/<app>/tasks.py``: the Django fix-up finds them through
INSTALLED_APPS when the worker starts (a web process imports them when it first queues one).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, task_failure, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("appliance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_REQUEST_ID_HEADER = "appliance_request_id"


@before_task_publish.connect
def _attach_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    from appliance.core.context import current

    if headers is not None and _REQUEST_ID_HEADER not in headers:
        headers[_REQUEST_ID_HEADER] = current().request_id


_tokens: dict[str, Any] = {}


@task_prerun.connect
def _restore_request_id(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    from appliance.core.context import RequestContext, new_request_id, set_context

    request_id = getattr(task.request, _REQUEST_ID_HEADER, None) if task is not None else None
    if task_id:
        _tokens[task_id] = set_context(RequestContext(request_id=request_id or new_request_id(), via="task"))


@task_postrun.connect
def _clear_request_id(task_id: str | None = None, **_: Any) -> None:
    from appliance.core.context import reset_context

    token = _tokens.pop(task_id or "", None)
    if token is not None:
        reset_context(token)


@task_failure.connect
def _count_failure(sender: Any = None, **_: Any) -> None:
    from appliance.monitoring.collector import note_task_failure

    note_task_failure(getattr(sender, "name", None) or "unknown")


# Registers the node and heartbeats from workers that consume their node's queue.
from workers import node_agent  # noqa: E402, F401

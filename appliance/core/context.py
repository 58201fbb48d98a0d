"""Per-request context (request id, client address, actor) carried in a ContextVar.

Services read it to fill audit records; Celery tasks receive the request id in a message
header so logs and audit records of background work correlate with the request that queued it.
"""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    source_ip: str | None = None
    user_agent: str = ""
    # "web", "api", "task", "command", "admin", "ws": where the change came from.
    via: str = "command"


_DEFAULT = RequestContext()  # frozen, so sharing it as the default is safe
_current: ContextVar[RequestContext] = ContextVar("appliance_request_context", default=_DEFAULT)


def current() -> RequestContext:
    return _current.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def set_context(ctx: RequestContext) -> Any:
    return _current.set(ctx)


def reset_context(token: Any) -> None:
    _current.reset(token)


def update_context(**changes: Any) -> None:
    _current.set(replace(_current.get(), **changes))


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get().request_id or "-"
        return True

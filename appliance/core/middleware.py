"""The request context (request id, client address, user agent, where from), decided in one place.

``console/asgi.py`` sets it at the ASGI edge for every HTTP request and WebSocket connection
(``context_from_scope``), before Django, the gateway's fast path or Channels see them; code further in
reads it with ``appliance.core.context.current()``. ``RequestIdMiddleware`` only copies the id onto
the request and the response, and sets the context itself where no ASGI edge ran (Django's test
client).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from appliance.core.clientip import client_ip, resolve
from appliance.core.context import RequestContext, current, new_request_id, reset_context, set_context

__all__ = ["EDGE_KEY", "RequestIdMiddleware", "client_ip", "context_from_scope", "request_context", "request_id_from"]

# An incoming X-Request-ID is kept only when it looks like an id, so a client cannot inject
# log lines or oversized values into the audit log.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_USER_AGENT_MAX = 255
_WANTED = frozenset((b"x-request-id", b"user-agent", b"x-forwarded-for"))
# Marks a scope whose context the edge set, so the middleware does not set another.
EDGE_KEY = "appliance.request_id"


def request_id_from(incoming: str) -> str:
    """The client's X-Request-ID when it looks like an id, else a new one."""
    return incoming if _VALID_REQUEST_ID.match(incoming) else new_request_id()


def via_for(path: str) -> str:
    """Where an HTTP request's changes come from, for audit records and metrics."""
    if path.startswith("/django-admin/"):
        return "admin"
    return "api" if path.startswith(("/api/", "/v1/")) else "web"


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The few headers the context needs; repeated ones joined with "," as Django's META joins them."""
    found: dict[bytes, str] = {}
    for name, value in raw:  # ASGI servers send header names lowercased
        if name in _WANTED:
            text = value.decode("latin-1")
            found[name] = f"{found[name]},{text}" if name in found else text
    return found


def context_from_scope(scope: Any) -> RequestContext:
    """The context of an ASGI ``http`` or ``websocket`` scope, as ``RequestIdMiddleware`` derives it from a request."""
    headers = _headers(scope.get("headers", ()))
    client = scope.get("client")
    return RequestContext(
        request_id=request_id_from(headers.get(b"x-request-id", "")),
        source_ip=resolve(
            client[0] if client else None, headers.get(b"x-forwarded-for", ""), settings.APPLIANCE_TRUSTED_PROXIES
        ),
        user_agent=headers.get(b"user-agent", "")[:_USER_AGENT_MAX],
        via="ws" if scope["type"] == "websocket" else via_for(scope.get("path", "")),
    )


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = getattr(request, "scope", {}).get(EDGE_KEY) and current().request_id
        token = None
        if not request_id:  # no ASGI edge ran (the test client): the same context, from the request
            request_id = request_id_from(request.headers.get("X-Request-ID", ""))
            context = RequestContext(
                request_id=request_id,
                source_ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", "")[:_USER_AGENT_MAX],
                via=via_for(request.path),
            )
            token = set_context(context)
        request.request_id = request_id  # type: ignore[attr-defined]
        try:
            response = self.get_response(request)
        finally:
            if token is not None:
                reset_context(token)
        response["X-Request-ID"] = request_id
        return response


def request_context(app: Any) -> Any:
    """ASGI edge: the request context of each HTTP request and WebSocket connection, set once for all that
    runs inside it (Django's handler and its thread, the gateway's fast path, Channels consumers and the
    tasks they start), reset when it ends. The chat consumer gives each message an id of its own."""

    async def edge(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        context = context_from_scope(scope)
        token = set_context(context)
        try:
            await app({**scope, EDGE_KEY: context.request_id}, receive, send)
        finally:
            reset_context(token)

    return edge

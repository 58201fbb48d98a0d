"""``/v1/`` from the ASGI server straight to the gateway's views, past Django's request handler.

Why: under the ASGI server, Django's handler runs the console's middleware (sessions, CSRF, locale, auth,
messages: synchronous) and the request_started/finished signals in a thread created for each
request, handing the request between that thread and the event loop several times. For the
gateway, whose views are async, use none of that middleware and rarely touch the database, those
handoffs were most of a request's cost: on the 2-core test machine, 1.3-1.7 times the streams per
second and half the time to first token this way (docs/performance.md). What the middleware gave
the gateway is kept here: the X-Request-ID response header and the client-disconnect handling of
Django's ASGI handler (the request context, for log lines and audit, is set before, at the ASGI edge, for
every request alike: console/asgi.py). The views, their URL conf (also mounted in console/urls.py,
which Django's handler uses when this is off) and Django's request and response objects are the same;
``APPLIANCE_GATEWAY_FAST_PATH=False`` sends ``/v1/`` through Django again.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from typing import Any, cast

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import Resolver404, resolve

from appliance.core.context import current, reset_context, set_context
from appliance.core.middleware import EDGE_KEY, context_from_scope, request_id_from
from appliance.gateway import admission
from appliance.gateway.errors import GatewayError
from appliance.monitoring.middleware import UNMATCHED, observe_http

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]  # loose: Django's and Channels' own annotations differ

PREFIX = "/v1/"
URLCONF = "appliance.gateway.root_urls"


class BodyTooLarge(Exception):
    pass


def gateway_fast_path(app: ASGIApp) -> ASGIApp:
    """Wrap the console's HTTP application: ``/v1/`` goes to the gateway, everything else to ``app``.

    Either way a ``/v1/`` request passes the edge first (``_edge``): a declared length over the limit
    and a request with a body but no valid key are refused before any of the body is read, and the
    body is counted while it is read, Django's path included, which would otherwise read it all
    before calling a view.
    """

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await app(scope, receive, send)
            return
        refusal = await _edge(scope)
        if refusal is not None:
            await _send_refusal(refusal, scope, send)
            return
        if settings.APPLIANCE_GATEWAY_FAST_PATH:
            await serve(scope, receive, send)
            return
        limited = _LimitedReceive(receive)
        started = _Started(send)
        await app(scope, limited, started)
        if limited.too_large and not started.started:
            await _send_refusal(_too_large(), scope, send)

    return dispatch


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def _too_large() -> GatewayError:
    return GatewayError(413, "The request body is too large.", code="request_too_large")


async def _edge(scope: Scope) -> GatewayError | None:
    """What is refused before the body is read: an oversized declared length, a body without a valid key."""
    declared = _header(scope, b"content-length")
    if declared.isdigit() and int(declared) > settings.APPLIANCE_GATEWAY_MAX_BODY_BYTES:
        return _too_large()
    if scope.get("method", "GET") not in _BODY_METHODS:
        return None  # nothing to read; the view checks the key
    try:
        await admission.authenticate(admission.bearer_secret(_header(scope, b"authorization")))
    except GatewayError as exc:
        return exc
    except Exception:
        logger.exception("gateway: key check failed")
        return GatewayError(500, "Internal error in the gateway.", type="server_error", code="internal")
    return None


async def _send_refusal(error: GatewayError, scope: Scope, send: Send) -> None:
    response = error.response()
    response["X-Request-ID"] = scope.get(EDGE_KEY) or request_id_from(_header(scope, b"x-request-id"))
    response["X-Content-Type-Options"] = "nosniff"
    await _send(response, send)


class _LimitedReceive:
    """``receive`` for Django's path: past the body limit the client is reported gone, so Django stops
    reading (RequestAborted) and the caller answers 413."""

    def __init__(self, receive: Receive) -> None:
        self.receive, self.size, self.too_large = receive, 0, False

    async def __call__(self) -> Message:
        if self.too_large:
            return {"type": "http.disconnect"}
        message = await self.receive()
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > settings.APPLIANCE_GATEWAY_MAX_BODY_BYTES:
                self.too_large = True
                return {"type": "http.disconnect"}
        return message


class _Started:
    def __init__(self, send: Send) -> None:
        self.send, self.started = send, False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    try:
        body = await _read_body(receive)
    except BodyTooLarge:
        await _send(_too_large().response(), send)
        return
    if body is None:
        return  # the client left before sending its request
    request = ASGIRequest(scope, io.BytesIO(body))
    # The request context is the ASGI edge's (console/asgi.py); set here only when called without it.
    token = None if EDGE_KEY in scope else set_context(context_from_scope(scope))
    request.request_id = current().request_id  # type: ignore[attr-defined]
    try:
        # Synchronous work of this request (rare: quota fallbacks) gets a thread of its own that
        # ends with it, as under Django's handler; no thread is started unless some is needed.
        async with ThreadSensitiveContext():
            await _until_disconnect(_process(request, send), receive)
    finally:
        if token is not None:
            reset_context(token)


async def _read_body(receive: Receive) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        part = message.get("body", b"")
        size += len(part)
        if size > settings.APPLIANCE_GATEWAY_MAX_BODY_BYTES:
            raise BodyTooLarge
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _until_disconnect(work: Awaitable[None], receive: Receive) -> None:
    """Run ``work``; if the client disconnects first, cancel it (the view, or the stream it relays)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, gone):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _process(request: ASGIRequest, send: Send) -> None:
    started, route = time.perf_counter(), UNMATCHED
    try:
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it on the Django path
        match = resolve(request.path_info, urlconf=URLCONF)
        route = match.route or UNMATCHED
        response = await match.func(request, *match.args, **match.kwargs)
    except DisallowedHost:
        response = GatewayError(400, "Invalid Host header.", code="invalid_host").response()
    except Resolver404:
        response = GatewayError(404, f"Unknown endpoint {request.path}.", code="unknown_url").response()
    except Exception:
        logger.exception("gateway: %s %s failed", request.method, request.path)
        response = GatewayError(500, "Internal error in the gateway.", type="server_error", code="internal").response()
    response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
    response["X-Content-Type-Options"] = "nosniff"  # as SecurityMiddleware sets it on the Django path
    # A stream's duration is its time to headers; the whole answer is console_llm_request_duration_seconds.
    observe_http(route, request.method or "", response.status_code, time.perf_counter() - started)
    await _send(response, send)


async def _send(response: HttpResponseBase, send: Send) -> None:
    headers = [(name.encode("ascii"), value.encode("latin-1")) for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    if isinstance(response, HttpResponse):
        await send({"type": "http.response.body", "body": response.content})
        return
    # StreamingHttpResponse.__aiter__ is an async generator; closing it on the way out, as Django's
    # handler does, reaches the relay's cleanup.
    content = cast(AsyncGenerator[bytes, None], cast(StreamingHttpResponse, response).__aiter__())
    try:
        async for part in content:
            await send({"type": "http.response.body", "body": part, "more_body": True})
    finally:
        await content.aclose()
    await send({"type": "http.response.body"})

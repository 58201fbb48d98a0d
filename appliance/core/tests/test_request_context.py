"""The request context set at the ASGI edge: the same for HTTP and WebSocket, seen by what runs inside."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.core.context import RequestContext, current
from appliance.core.middleware import EDGE_KEY, request_context


async def _seen(kind: str, path: str, headers: list[tuple[bytes, bytes]], peer: str = "192.0.2.7") -> RequestContext:
    seen: list[RequestContext] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope[EDGE_KEY] == current().request_id
        seen.append(current())

    await request_context(app)({"type": kind, "path": path, "headers": headers, "client": (peer, 5000)}, None, None)
    assert current().request_id == ""  # reset when the request ends
    return seen[0]


@pytest.mark.asyncio
async def test_http_and_websocket_get_the_same_context(settings: Any) -> None:
    settings.APPLIANCE_TRUSTED_PROXIES = ["127.0.0.1"]
    headers = [(b"x-request-id", b"trace-0001"), (b"user-agent", b"curl/8"), (b"x-forwarded-for", b"203.0.113.9")]
    api = await _seen("http", "/api/v1/users/", headers, peer="127.0.0.1")
    assert api == RequestContext(request_id="trace-0001", source_ip="203.0.113.9", user_agent="curl/8", via="api")
    chat = await _seen("websocket", "/ws/chat/", headers)
    assert chat == RequestContext(request_id="trace-0001", source_ip="192.0.2.7", user_agent="curl/8", via="ws")
    assert (await _seen("http", "/v1/models", [])).via == "api"
    assert (await _seen("http", "/django-admin/", [])).via == "admin"
    page = await _seen("http", "/users/", [(b"x-request-id", b"bad id\nforged log line")])
    assert page.via == "web" and len(page.request_id) == 32 and page.request_id.isalnum()  # not the client's


@pytest.mark.asyncio
async def test_other_scopes_pass_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, current().request_id))

    await request_context(app)({"type": "lifespan"}, None, None)
    assert seen == [({"type": "lifespan"}, "")]

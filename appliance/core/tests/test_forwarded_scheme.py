"""The scheme a trusted proxy forwards (X-Forwarded-Proto) reaches Django; anyone else's is ignored."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.core.clientip import forwarded_scheme


async def _scheme_seen(kind: str, peer: str, proto: bytes) -> str:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    scope: dict[str, Any] = {"type": kind, "scheme": "ws" if kind == "websocket" else "http", "client": (peer, 5000)}
    scope["headers"] = [(b"x-forwarded-proto", proto), (b"x-forwarded-for", b"203.0.113.9")]
    await forwarded_scheme(app)(scope, None, None)
    assert seen["client"] == (peer, 5000)  # the address is client_ip's to decide
    return str(seen["scheme"])


@pytest.mark.asyncio
async def test_https_from_a_trusted_proxy_only(settings: Any) -> None:
    settings.APPLIANCE_TRUSTED_PROXIES = ["127.0.0.1", "10.8.0.0/16"]
    assert await _scheme_seen("http", "127.0.0.1", b"https") == "https"
    assert await _scheme_seen("websocket", "10.8.3.4", b"https") == "wss"
    assert await _scheme_seen("http", "192.0.2.1", b"https") == "http"  # not a proxy of ours
    assert await _scheme_seen("http", "127.0.0.1", b"gopher") == "http"

"""The gateway's edge (issue 12, item 5): the key before the body, the body limit while reading,
and ``/v1/models`` lookups within the promised bound.

The console's ASGI application is driven in this process by a scripted client that counts how much
of its body the server asked for, on the fast path and on Django's path alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from appliance.accounts.models import User
from appliance.accounts.services import create_api_key
from appliance.gateway import admission

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 256 * 1024


class ScriptedClient:
    """Sends ``chunks`` as the request body, one per ``receive()``, then waits for the answer."""

    def __init__(self, chunks: int) -> None:
        self.chunks, self.consumed = chunks, 0
        self.messages: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.consumed < self.chunks:
            self.consumed += 1
            return {"type": "http.request", "body": b" " * CHUNK, "more_body": self.consumed < self.chunks}
        await asyncio.sleep(3600)  # the client waits for the answer; the server cancels this
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.messages if m["type"] == "http.response.start"))


def _scope(secret: str, content_length: int | None = None) -> dict[str, Any]:
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if secret:
        headers.append((b"authorization", f"Bearer {secret}".encode()))
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("192.0.2.10", 40000),
        "server": ("127.0.0.1", 8000),
    }


def _call(scope: dict[str, Any], client: ScriptedClient) -> None:
    from console.asgi import application

    async def run() -> None:
        await asyncio.wait_for(application(scope, client.receive, client.send), timeout=30)

    asyncio.run(run())


def _key(user: User) -> str:
    with transaction.atomic():
        return create_api_key(user, name="edge")[1]


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_bad_key_is_refused_before_the_body_is_read(fast_path: bool) -> None:
    client = ScriptedClient(chunks=80)  # 20 MB
    with override_settings(APPLIANCE_GATEWAY_FAST_PATH=fast_path):
        _call(_scope("ak_not_a_key"), client)
    assert client.status == 401
    assert client.consumed == 0


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_missing_key_is_refused_before_the_body_is_read(fast_path: bool) -> None:
    client = ScriptedClient(chunks=80)
    with override_settings(APPLIANCE_GATEWAY_FAST_PATH=fast_path):
        _call(_scope(""), client)
    assert client.status == 401 and client.consumed == 0


@pytest.mark.parametrize("fast_path", [True, False])
def test_the_body_limit_stops_reading_at_the_limit(fast_path: bool, personas: dict[str, User]) -> None:
    secret = _key(personas["bob"])
    client = ScriptedClient(chunks=80)
    with override_settings(APPLIANCE_GATEWAY_FAST_PATH=fast_path, APPLIANCE_GATEWAY_MAX_BODY_BYTES=4 * CHUNK):
        _call(_scope(secret), client)
    assert client.status == 413
    assert client.consumed <= 5


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_declared_length_over_the_limit_is_refused_unread(fast_path: bool, personas: dict[str, User]) -> None:
    secret = _key(personas["bob"])
    client = ScriptedClient(chunks=80)
    with override_settings(APPLIANCE_GATEWAY_FAST_PATH=fast_path, APPLIANCE_GATEWAY_MAX_BODY_BYTES=4 * CHUNK):
        _call(_scope(secret, content_length=80 * CHUNK), client)
    assert client.status == 413 and client.consumed == 0


def test_models_lookups_stay_within_the_bound_and_are_shared(
    personas: dict[str, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = threading.Lock()
    state = {"running": 0, "peak": 0, "calls": 0}
    original = admission._models

    def observed(secret: str) -> list[tuple[str, int]]:
        with lock:
            state["running"] += 1
            state["calls"] += 1
            state["peak"] = max(state["peak"], state["running"])
        try:
            time.sleep(0.05)  # long enough for the burst to pile up
            return original(secret)
        finally:
            with lock:
                state["running"] -= 1

    monkeypatch.setattr(admission, "_models", observed)
    secret = _key(personas["bob"])

    async def burst() -> None:
        await asyncio.gather(*(admission.models(f"ak_unknown_{n}") for n in range(40)), return_exceptions=True)
        state["calls"] = 0
        await asyncio.gather(*(admission.models(secret) for _ in range(20)))

    asyncio.run(burst())
    assert state["peak"] <= admission._CONCURRENT_LOOKUPS
    assert state["calls"] == 1

"""Driving ``ws/chat/`` as a browser would: the real ASGI application, a real session cookie."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from appliance.accounts.models import User
from appliance.chat import generation

TIMEOUT = 30  # generous: the shared MariaDB and Redis of a busy CI machine can stall a moment


def _cookie(user: User) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def open_socket(user: User | None) -> WebsocketCommunicator:
    """A connected socket (its "ready" read), or an unconnected one for ``user=None``."""
    from console.asgi import application

    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if user is not None:
        headers.append((b"cookie", await sync_to_async(_cookie)(user)))
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    if user is not None:
        connected, _code = await socket.connect()
        assert connected
        assert (await socket.receive_json_from(TIMEOUT))["type"] == "ready"
    return socket


async def receive_until(socket: WebsocketCommunicator, *types: str) -> list[dict[str, Any]]:
    """Every event up to and including the first of one of ``types``."""
    events = []
    while True:
        event = await socket.receive_json_from(TIMEOUT)
        events.append(event)
        if event["type"] in types:
            return events


async def send(socket: WebsocketCommunicator, model: str, content: str, **extra: Any) -> dict[str, Any]:
    """Send a message; returns the "started" event."""
    await socket.send_json_to({"type": "send", "model": model, "content": content, **extra})
    events = await receive_until(socket, "started", "error")
    return events[-1]


async def finish(socket: WebsocketCommunicator) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The deltas and the "done" event of the answer in progress."""
    events = await receive_until(socket, "done", "error")
    return [e for e in events if e["type"] == "delta"], events[-1]


async def settle(message_id: int) -> None:
    """Wait for a generation to be over (its task ends after storing and publishing)."""
    task = generation.running(message_id)
    if task is not None:
        await task


def joined(deltas: list[dict[str, Any]], field: str = "content", start: str = "", after_seq: int = 0) -> str:
    text = start
    for delta in deltas:
        if delta["seq"] <= after_seq:
            continue
        text = delta[field] if delta["replace"] else text + delta[field]
    return text

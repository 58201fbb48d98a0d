"""The chat reaches engines through the engine client the gateway uses (appliance/engines/client.py)."""

from __future__ import annotations

import asyncio
import re

import pytest

from appliance.accounts.models import User
from appliance.chat.tests.fake_engine import FakeEngine, Script
from appliance.chat.tests.wsclient import finish, open_socket, send
from appliance.deployments.models import Deployment

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_answers_forward_a_request_id_and_ask_the_engine_for_its_usage(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.scripts = [Script(content=["one"]), Script(content=["two"])]
    socket = await open_socket(personas["bob"])
    first = await send(socket, engine.model, "a")
    await finish(socket)
    await send(socket, engine.model, "b", conversation_id=first["conversation"]["id"])
    _deltas, done = await finish(socket)
    await socket.disconnect()
    ids = engine.seen.request_ids[-2:]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]
    assert all(body["stream_options"] == {"include_usage": True} for body in engine.seen.bodies)
    assert (done["message"]["completion_tokens"], done["message"]["usage_estimated"]) == (1, False)


async def test_reads_bounded_by_a_timeout_lose_nothing(engine: FakeEngine) -> None:
    """The generation cancels a read when a batch falls due while the engine is quiet (``generation.Alarm``),
    instead of reading in a task of its own: an answer read that way, cancelled again and again, is whole."""
    from appliance.chat import upstream
    from appliance.deployments.routing import Endpoint

    words = [f"w{i} " for i in range(30)]
    engine.default = Script(content=words, delay=0.01)
    replica = Endpoint(1, 1, engine.model, "vllm", f"http://127.0.0.1:{engine.port}", 1)
    text, timeouts = "", 0
    async with upstream.open_stream([replica], {"model": engine.model, "messages": [], "stream": True}) as stream:
        while True:
            try:
                async with asyncio.timeout(0.004):
                    found = await stream.read()
            except TimeoutError:
                timeouts += 1
                continue
            if found is None:
                break
            text += "".join(c.content for c in found)
    assert text == "".join(words) and timeouts > 5

"""The chat with several web processes, as deployed: a second tab served by another process picks the
answer up, and a stop sent to another process stops it.

Two consoles (``manage.py serve``, as `make run` starts it) share the test database and Redis, as the
workers of one console do; with two of them each socket's process is known, where workers sharing one
listening socket are picked by the kernel. Sockets are real WebSocket clients with a session cookie.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from websockets.sync.client import ClientConnection, connect

from appliance.accounts.models import User
from appliance.chat.choices import Status as MessageStatus
from appliance.chat.models import Message
from appliance.chat.tests.conftest import served_chat_env
from appliance.chat.tests.fake_engine import FakeEngine, Script
from appliance.deployments.models import Deployment
from tests.served import served_console

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TIMEOUT = 30


@pytest.fixture
def consoles(transactional_db: Any, tmp_path: Path) -> Iterator[list[str]]:
    env = served_chat_env()
    with (
        served_console(tmp_path / "one.log", env, workers=1) as (one, _p1),
        served_console(tmp_path / "two.log", env, workers=1) as (two, _p2),
    ):
        yield [one.replace("http://", "ws://"), two.replace("http://", "ws://")]


@contextlib.contextmanager
def _socket(base: str, user: User) -> Iterator[ClientConnection]:
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    with connect(f"{base}/ws/chat/", additional_headers={"Cookie": cookie, "Origin": "http://127.0.0.1"}) as socket:
        assert _receive(socket)["type"] == "ready"
        yield socket


def _receive(socket: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(socket.recv(timeout=TIMEOUT)))


def _until(socket: ClientConnection, *types: str) -> list[dict[str, Any]]:
    events = [_receive(socket)]
    while events[-1]["type"] not in types:
        events.append(_receive(socket))
    return events


def _send(socket: ClientConnection, **message: Any) -> None:
    socket.send(json.dumps(message))


def test_a_second_tab_on_another_process_picks_up_the_answer(
    consoles: list[str], personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    words = [f"w{i} " for i in range(40)]
    engine.default = Script(content=words, delay=0.05)
    with _socket(consoles[0], personas["bob"]) as first, _socket(consoles[1], personas["bob"]) as second:
        _answer_and_pick_up(first, second, engine.model, words)


def test_a_tab_opened_on_another_process_while_the_answer_streams_picks_it_up(
    consoles: list[str], personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    """The second process learns of the tab only when it opens, after batches that were sent to the first tab
    but not yet written to Redis (``LIVE_WRITE_SECONDS``): the tab must still get every word."""
    words = [f"w{i} " for i in range(60)]
    engine.default = Script(content=words, delay=0.03)
    with _socket(consoles[0], personas["bob"]) as first:
        _send(first, type="send", model=engine.model, content="count")
        started = _until(first, "started")[-1]
        while _until(first, "delta")[-1]["seq"] < 4:
            pass
        with _socket(consoles[1], personas["bob"]) as second:
            _send(second, type="subscribe", conversation_id=started["conversation"]["id"])
            answer = _until(second, "conversation")[-1]["messages"][-1]
            # Redis holds the text as of its last write (none yet, or the first words): a beginning of the answer.
            assert answer["status"] == MessageStatus.STREAMING and "".join(words).startswith(answer["content"])
            text, seq = answer["content"], answer["seq"]
            events = _until(second, "done")
    for delta in (e for e in events if e["type"] == "delta" and e["seq"] > seq):
        assert delta["after"] <= seq  # each follows what the tab has: no gap to re-read
        text = delta["content"] if delta["replace"] else text + delta["content"]
        seq = delta["seq"]
    assert events[-1]["message"]["status"] == MessageStatus.COMPLETE
    assert text == "".join(words)


def _answer_and_pick_up(first: ClientConnection, second: ClientConnection, model: str, words: list[str]) -> None:
    _send(first, type="send", model=model, content="count")
    started = _until(first, "started")[-1]
    _until(first, "delta")
    _send(second, type="subscribe", conversation_id=started["conversation"]["id"])
    snapshot = _until(second, "conversation")[-1]
    answer = snapshot["messages"][-1]
    assert answer["status"] == MessageStatus.STREAMING
    text, seq = answer["content"], answer.get("seq", 0)
    events = _until(second, "done")
    for delta in (e for e in events if e["type"] == "delta" and e["seq"] > seq):
        text = delta["content"] if delta["replace"] else text + delta["content"]
    assert events[-1]["message"]["status"] == MessageStatus.COMPLETE
    assert text == "".join(words)
    assert _until(first, "done")[-1]["message"]["content"] == "".join(words)


def test_a_stop_sent_to_another_process_stops_the_answer(
    consoles: list[str], personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.default = Script(content=[f"w{i} " for i in range(400)], delay=0.05)
    with _socket(consoles[0], personas["bob"]) as asking, _socket(consoles[1], personas["bob"]) as other:
        _send(asking, type="send", model=engine.model, content="a long one")
        answer_id = _until(asking, "started")[-1]["messages"][1]["id"]
        _until(asking, "delta")
        _send(other, type="stop", message_id=answer_id)
        done = _until(asking, "done")[-1]
    assert done["message"]["status"] == MessageStatus.STOPPED
    assert engine.disconnected.wait(TIMEOUT)  # the engine saw the console leave: it stops generating
    stored = Message.objects.get(pk=answer_id)
    assert stored.status == MessageStatus.STOPPED and stored.content.startswith("w0 ")

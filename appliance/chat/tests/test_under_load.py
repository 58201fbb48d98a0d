"""64 people send at once to the console as `make run` serves it: every answer arrives whole (issue 11).

Measured on the daphne and the first granian stack: with 64 chats in flight, a share of the answers
(26 and 33 of 64 in two runs; 3 to 13 of 64 on granian with two workers) got their first delta and
then nothing, neither more text nor a "done", though every one of them was stored complete. The events
went through the channel layer, whose per-process inbox holds 100 messages: a worker whose loop ran
behind had more than that waiting, and channels_redis drops a group message to a full inbox without a
word. Here 64 people, each with a second tab open, send at once over real sockets to the console's two
workers (64 tokens at 20 ms a token, from an engine process of its own); the test fails on any answer
that does not arrive complete, in order and without a gap, and on a second tab not told it ended.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from appliance.accounts.models import Role, User
from appliance.chat.choices import Status as MessageStatus
from appliance.chat.tests.conftest import served_chat_env
from appliance.chat.tests.factories import running_deployment
from bench.harness import synthetic
from bench.synthetic_upstream import TOKEN
from tests.served import free_port, login_session, served_console

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHATS = 64
TOKENS = 64
ANSWER = TOKEN * TOKENS
LIMIT_SECONDS = 60.0


@dataclass
class Chat:
    cookie: str
    deltas: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] | None = None
    other_tab_done: dict[str, Any] | None = None
    error: str = ""


async def _converse(base: str, chat: Chat, model: str, opened: list[Chat], go: asyncio.Event, deadline: float) -> None:
    headers = {"Cookie": f"sessionid={chat.cookie}", "Origin": "http://127.0.0.1"}
    try:
        async with (
            connect(f"{base}/ws/chat/", additional_headers=headers, open_timeout=30) as socket,
            connect(f"{base}/ws/chat/", additional_headers=headers, open_timeout=30) as other_tab,
        ):
            assert json.loads(await socket.recv())["type"] == "ready"
            assert json.loads(await other_tab.recv())["type"] == "ready"
            opened.append(chat)
            await go.wait()
            await socket.send(json.dumps({"type": "send", "model": model, "content": "count", "max_tokens": TOKENS}))
            await asyncio.gather(_until_done(socket, chat, deadline), _other_tab(other_tab, chat, deadline))
    except Exception as exc:  # recorded and asserted on: one chat's failure must not hide the others'
        chat.error = f"{type(exc).__name__}: {exc}"


async def _other_tab(socket: ClientConnection, chat: Chat, deadline: float) -> None:
    """The user's second tab, on another conversation: it hears of the answer's start and end only."""
    while chat.other_tab_done is None:
        event = json.loads(await asyncio.wait_for(socket.recv(), max(0.1, deadline - time.monotonic())))
        if event["type"] == "done":
            chat.other_tab_done = event


async def _until_done(socket: ClientConnection, chat: Chat, deadline: float) -> None:
    while chat.done is None:
        event = json.loads(await asyncio.wait_for(socket.recv(), max(0.1, deadline - time.monotonic())))
        if event["type"] == "delta":
            chat.deltas.append(event)
        elif event["type"] == "done":
            chat.done = event
        elif event["type"] == "error":
            chat.error = f"error event: {event}"
            return


async def _all(base: str, chats: list[Chat], model: str) -> None:
    go, opened = asyncio.Event(), list[Chat]()
    opening_ends = time.monotonic() + 30
    ends = opening_ends + LIMIT_SECONDS
    tasks = [asyncio.create_task(_converse(base, chat, model, opened, go, ends)) for chat in chats]
    # Every socket open before anyone sends: the load is the answers, not the handshakes.
    while len(opened) + sum(1 for c in chats if c.error) < len(chats) and time.monotonic() < opening_ends:
        await asyncio.sleep(0.1)
    go.set()
    await asyncio.gather(*tasks)


def test_64_chats_at_once_each_get_their_whole_answer(tmp_path: Path, personas: dict[str, User]) -> None:
    # The engine in a process of its own, paced as a real one (20 ms a token), as the benchmark runs it.
    port = free_port()
    department = personas["bob"].department
    running_deployment(department, personas["alice"], "synthetic", port)
    users = [User.objects.create_user(f"load{i:03d}", department=department, role=Role.MEMBER) for i in range(CHATS)]
    chats = [Chat(login_session(user)) for user in users]
    env = served_chat_env()
    with synthetic(port, tokens=TOKENS, token_delay_ms=20), served_console(tmp_path / "c.log", env) as (url, _proc):
        asyncio.run(_all(url.replace("http://", "ws://"), chats, "synthetic"))

    missed = [i for i, c in enumerate(chats) if c.other_tab_done is None]
    assert not missed, f"{len(missed)} second tabs not told: {missed[:10]}; {(tmp_path / 'c.log').read_text()[-3000:]}"
    failures = [f"{i}: {c.error or 'no done'} after {len(c.deltas)} deltas" for i, c in enumerate(chats) if not c.done]
    assert not failures, f"{len(failures)} of {CHATS} answers lost: {failures[:8]}"
    for chat in chats:
        assert chat.done is not None
        message = chat.done["message"]
        assert message["status"] == MessageStatus.COMPLETE, (message.get("error_code"), message.get("error_detail"))
        seqs = [d["seq"] for d in chat.deltas]
        assert seqs == list(range(1, len(seqs) + 1)), f"deltas lost or out of order: {seqs}"
        text = ""
        for delta in chat.deltas:
            text = delta["content"] if delta["replace"] else text + delta["content"]
        assert text == ANSWER
        assert message["content"] == ANSWER
        assert chat.other_tab_done is not None
        assert chat.other_tab_done["message"] == {"id": message["id"], "status": MessageStatus.COMPLETE}

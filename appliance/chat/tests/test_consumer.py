"""The chat socket end to end: real ASGI stack and session, Redis channel layer, a fake engine over HTTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from appliance.accounts.models import User
from appliance.chat import answers
from appliance.chat.models import Conversation, Message
from appliance.chat.tests.factories import R1_DISTILL, SMOLLM2, running_deployment
from appliance.chat.tests.fake_engine import FakeEngine, Script
from appliance.chat.tests.wsclient import finish, joined, open_socket, receive_until, send, settle
from appliance.deployments.models import Deployment

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_a_socket_without_a_session_is_refused(personas: dict[str, User]) -> None:
    socket = await open_socket(None)
    connected, code = await socket.connect()
    assert (connected, code) == (False, 4401)


@pytest.mark.parametrize("ended", ["deactivated", "logged_out", "expired"])
async def test_an_open_socket_is_closed_at_its_next_message_once_its_user_is_gone(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment, ended: str
) -> None:
    from django.contrib.sessions.models import Session

    bob = personas["bob"]
    socket = await open_socket(bob)
    if ended == "deactivated":
        await User.objects.filter(pk=bob.pk).aupdate(is_active=False)
    elif ended == "logged_out":
        await Session.objects.all().adelete()
    else:
        await Session.objects.all().aupdate(expire_date=timezone.now() - timedelta(seconds=1))
    await socket.send_json_to({"type": "send", "model": engine.model, "content": "hi"})
    closed = await socket.receive_output(10)
    assert (closed["type"], closed.get("code")) == ("websocket.close", 4401)
    assert not await Conversation.objects.filter(user=bob).aexists()  # nothing was written for it


async def test_a_user_changed_while_the_socket_is_open_is_seen_at_its_next_message(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    """The socket keeps its user between messages only while the user's and the department's rows are unchanged."""
    bob = personas["bob"]
    socket = await open_socket(bob)
    await send(socket, engine.model, "first")
    await finish(socket)
    await User.objects.filter(pk=bob.pk).aupdate(department=personas["charlie"].department_id)  # to 财务部
    reply = await send(socket, engine.model, "second")
    await socket.disconnect()
    assert (reply["type"], reply["code"]) == ("error", "model_unavailable")  # the model is 研发部's


async def test_answer_streams_in_batches_and_is_stored_once(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.default = Script(content=[f"w{i} " for i in range(60)])
    saves: list[int] = []
    monkeypatch.setattr(answers, "save_progress", lambda message_id, *_: saves.append(message_id))
    socket = await open_socket(personas["bob"])
    started = await send(socket, engine.model, "你好", system_prompt="Be brief.")
    deltas, done = await finish(socket)
    await socket.disconnect()

    expected = "".join(f"w{i} " for i in range(60))
    assert joined(deltas) == expected
    assert 3 <= len(deltas) < 60  # batched: at most 20 pieces a batch, not one event per token
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert [d["after"] for d in deltas] == [d["seq"] - 1 for d in deltas]  # what each follows: a gap shows
    message = done["message"]
    assert (message["status"], message["content"], message["reasoning"]) == ("complete", expected, "")
    assert (message["prompt_tokens"], message["completion_tokens"], message["usage_estimated"]) == (11, 60, False)
    assert message["ttft_ms"] is not None and message["tokens_per_second"] is not None
    assert saves == []  # no database write while streaming a short answer; one at the end
    stored = await Message.objects.aget(pk=message["id"])
    assert (stored.status, stored.content) == ("complete", expected)
    body = engine.seen.bodies[-1]
    assert body["stream"] is True and body["temperature"] == 1.3  # conversation's default
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好"}]
    assert started["conversation"]["title"] == "你好"


async def test_an_answer_whose_live_state_cannot_be_started_fails_before_the_engine_is_asked(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Redis no other tab, no reaper and no stop by flag could follow the answer: it fails at once, as
    the send did when the state was made in its transaction, not at its first write with the engine running."""
    from appliance.chat import live

    async def unavailable(*_args: Any) -> tuple[bool, bool]:
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(live, "start", unavailable)
    asked = len(engine.seen.bodies)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hello")
    deltas, done = await finish(socket)
    await socket.disconnect()
    assert deltas == [] and (done["message"]["status"], done["message"]["error_code"]) == ("failed", "internal")
    assert len(engine.seen.bodies) == asked  # the engine was not asked
    stored = await Message.objects.aget(pk=done["message"]["id"])
    assert (stored.status, stored.error_code) == ("failed", "internal")


async def test_a_batch_due_while_the_engine_is_quiet_goes_out_without_waiting_for_its_next_piece(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    """The generation's alarm (``generation.Alarm``): a piece read 300 ms before the next one is sent on its
    own, not with the next one."""
    engine.default = Script(content=["a", "b", "c"], delay=0.3)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "slowly")
    deltas, done = await finish(socket)
    await socket.disconnect()
    assert [d["content"] for d in deltas] == ["a", "b", "c"]
    assert done["message"]["content"] == "abc"


async def test_with_no_socket_of_the_user_elsewhere_nothing_of_the_answer_is_published(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    """The other processes would only read and drop the events (fanout): they are not sent to them."""
    from appliance.chat import fanout, live

    engine.default = Script(content=["a"] * 30, delay=0.01)
    listener = live.client().pubsub()
    await asyncio.to_thread(listener.subscribe, fanout.channel())
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hi")
    deltas, done = await finish(socket)
    await socket.disconnect()
    assert done["message"]["content"] == "a" * 30 and len(deltas) >= 2
    messages = []
    while (message := await asyncio.to_thread(listener.get_message, timeout=0.3)) is not None:
        messages.append(message)
    listener.close()
    assert [m["type"] for m in messages] == ["subscribe"]


async def test_an_answer_the_database_refused_is_whole_in_redis_for_the_reaper(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis gets the text only every LIVE_WRITE_SECONDS while it streams; the reaper must still find all of it."""
    from appliance.chat import generation, live

    def refused(*_args: Any) -> None:
        raise RuntimeError("database away")

    monkeypatch.setattr(generation, "STORE_RETRY_PAUSES", (0.0,))
    monkeypatch.setattr(generation, "_store", refused)
    engine.default = Script(content=[f"w{i} " for i in range(20)], delay=0.01)
    socket = await open_socket(personas["bob"])
    started = await send(socket, engine.model, "hi")
    answer_id = started["messages"][1]["id"]
    whole = "".join(f"w{i} " for i in range(20))
    for _ in range(100):  # the generation ends a moment after "started" reaches the socket
        await settle(answer_id)
        state = await live.snapshot(answer_id)
        if state is not None and state.content == whole:
            break
        await asyncio.sleep(0.1)
    await socket.disconnect()
    assert state is not None and state.content == whole


async def test_slow_tokens_are_sent_every_50_ms(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.default = Script(content=["a"] * 20, delay=0.02)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hi")
    deltas, done = await finish(socket)
    await socket.disconnect()
    assert done["message"]["content"] == "a" * 20
    assert 4 <= len(deltas) <= 16  # ~0.4 s of tokens in 50 ms batches: neither one batch nor one per token


@pytest.mark.parametrize(
    ("task", "defaults", "expected"), [("code", None, 0.0), ("conversation", {"conversation": 0.7}, 0.7)]
)
async def test_temperature_follows_the_task_and_profile(
    personas: dict[str, User], engine: FakeEngine, task: str, defaults: Any, expected: float
) -> None:
    await sync_to_async(running_deployment)(
        personas["alice"].department, personas["alice"], engine.model, engine.port, chat_defaults=defaults
    )
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "2+2?", task=task, max_tokens=64)
    await finish(socket)
    await socket.disconnect()
    assert engine.seen.bodies[-1]["temperature"] == expected
    assert engine.seen.bodies[-1]["max_tokens"] == 64


async def test_another_users_conversation_is_not_found(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    bob = await open_socket(personas["bob"])
    started = await send(bob, engine.model, "secret plans")
    await finish(bob)
    conversation_id = started["conversation"]["id"]
    answer_id = started["messages"][1]["id"]
    requests = len(engine.seen.bodies)

    carol = await open_socket(personas["carol"])  # same department tree, still not hers
    attempts = [
        {"type": "subscribe", "conversation_id": conversation_id},
        {"type": "send", "conversation_id": conversation_id, "model": engine.model, "content": "mine now"},
        {"type": "regenerate", "message_id": answer_id},
        {"type": "edit", "message_id": started["messages"][0]["id"], "content": "x"},
        {"type": "stop", "message_id": answer_id},
    ]
    for attempt in attempts:
        await carol.send_json_to(attempt)
        reply = await carol.receive_json_from(5)
        assert (reply["type"], reply["code"]) == ("error", "not_found"), attempt
    await carol.disconnect()
    await bob.disconnect()
    assert len(engine.seen.bodies) == requests
    assert await Message.objects.filter(conversation_id=conversation_id).acount() == 2


async def test_a_model_of_another_department_is_refused(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    socket = await open_socket(personas["charlie"])  # 财务部: the model belongs to 研发部
    reply = await send(socket, engine.model, "hello")
    await socket.disconnect()
    assert (reply["type"], reply["code"]) == ("error", "model_unavailable")
    assert engine.seen.bodies == []
    assert not await Conversation.objects.filter(user=personas["charlie"]).aexists()


async def test_a_refresh_picks_up_the_answer_in_progress(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.default = Script(content=[f"t{i} " for i in range(40)], delay=0.03)
    first = await open_socket(personas["bob"])
    started = await send(first, engine.model, "long answer please")
    await receive_until(first, "delta")
    await first.disconnect()  # the tab closes; the answer goes on

    await asyncio.sleep(0.2)
    second = await open_socket(personas["bob"])
    await second.send_json_to({"type": "subscribe", "conversation_id": started["conversation"]["id"]})
    snapshot = (await receive_until(second, "conversation"))[-1]
    answer = snapshot["messages"][-1]
    assert answer["status"] == "streaming" and answer["content"].startswith("t0 ") and answer["seq"] >= 1
    deltas, done = await finish(second)
    await second.disconnect()
    expected = "".join(f"t{i} " for i in range(40))
    assert joined(deltas, start=answer["content"], after_seq=answer["seq"]) == expected
    assert done["message"]["content"] == expected and done["message"]["status"] == "complete"


async def test_stop_closes_the_engine_request_and_keeps_the_partial_answer(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.default = Script(content=["x"] * 400, delay=0.02)
    socket = await open_socket(personas["bob"])
    started = await send(socket, engine.model, "go on forever")
    answer_id = started["messages"][1]["id"]
    await receive_until(socket, "delta")

    intruder = await open_socket(personas["alice"])  # her department's model, but not her answer
    await intruder.send_json_to({"type": "stop", "message_id": answer_id})
    assert (await intruder.receive_json_from(5))["code"] == "not_found"
    await intruder.disconnect()

    await socket.send_json_to({"type": "stop", "message_id": answer_id})
    _deltas, done = await finish(socket)
    await socket.disconnect()
    assert done["message"]["status"] == "stopped"
    assert 0 < len(done["message"]["content"]) < 400
    assert await asyncio.to_thread(engine.disconnected.wait, 5)
    assert engine.seen.completed == 0
    stored = await Message.objects.aget(pk=answer_id)
    assert (stored.status, stored.content) == ("stopped", done["message"]["content"])


@pytest.mark.parametrize(
    ("slug", "script", "reasoning", "content"),
    [
        (SMOLLM2, Script(content=["<th", "ink>\nPlan ", "it.</think>", "\n\nDone."]), "Plan it.", "Done."),
        (R1_DISTILL, Script(content=["Plan ", "it.\n</thi", "nk>\n\n", "Done."]), "Plan it.", "Done."),
        (SMOLLM2, Script(content=["Plan it.", "</think>", "Done."]), "Plan it.", "Done."),
        (R1_DISTILL, Script(reasoning=["Plan ", "it."], content=["Done."]), "Plan it.", "Done."),
    ],
    ids=["tags", "r1-without-opening-tag", "lone-closing-tag", "reasoning_content"],
)
async def test_reasoning_is_stored_apart(
    personas: dict[str, User], engine: FakeEngine, slug: str, script: Script, reasoning: str, content: str
) -> None:
    await sync_to_async(running_deployment)(
        personas["alice"].department, personas["alice"], engine.model, engine.port, model_slug=slug
    )
    engine.default = script
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "think first")
    deltas, done = await finish(socket)
    await socket.disconnect()
    message = done["message"]
    assert (message["reasoning"], message["content"]) == (reasoning, content)
    assert message["reasoning_ms"] is not None
    assert (joined(deltas, "reasoning").strip(), joined(deltas)) == (reasoning, content)
    stored = await Message.objects.aget(pk=message["id"])
    assert (stored.reasoning, stored.content) == (reasoning, content)


async def test_llama_cpp_python_stream_dialect(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.default = Script(content=["Hi", " there"], starlette=True, usage=False)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hello")
    _deltas, done = await finish(socket)
    await socket.disconnect()
    message = done["message"]
    assert (message["status"], message["content"]) == ("complete", "Hi there")
    assert (message["completion_tokens"], message["usage_estimated"]) == (2, True)


async def test_a_failure_mid_stream_keeps_the_partial_answer(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.default = Script(content=["one ", "two ", "three ", "four "], fail_after=3)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "count")
    _deltas, done = await finish(socket)
    await socket.disconnect()
    message = done["message"]
    assert (message["status"], message["error_code"]) == ("failed", "engine_disconnected")
    assert message["content"] == "one two three "
    stored = await Message.objects.aget(pk=message["id"])
    assert (stored.status, stored.content) == ("failed", "one two three ")


@pytest.mark.parametrize(("status", "code"), [(500, "engine_error"), (None, "engine_unavailable")])
async def test_engine_errors_and_a_dead_engine_fail_clearly(
    personas: dict[str, User], engine: FakeEngine, status: int | None, code: str
) -> None:
    port = engine.port if status else 9  # nothing listens on port 9 (discard) here
    await sync_to_async(running_deployment)(personas["alice"].department, personas["alice"], "m", port)
    engine.default = Script(status=status or 200)
    socket = await open_socket(personas["bob"])
    await send(socket, "m", "hello")
    _deltas, done = await finish(socket)
    await socket.disconnect()
    assert (done["message"]["status"], done["message"]["error_code"]) == ("failed", code)
    if status:
        assert "engine says 500" in done["message"]["error_detail"]


async def test_regenerate_replaces_the_last_answer(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.scripts = [Script(content=["first"]), Script(content=["second"])]
    socket = await open_socket(personas["bob"])
    started = await send(socket, engine.model, "question")
    await finish(socket)
    old_answer = started["messages"][1]["id"]
    await socket.send_json_to({"type": "regenerate", "message_id": old_answer})
    again = (await receive_until(socket, "started"))[-1]
    _deltas, done = await finish(socket)
    await socket.disconnect()
    assert again["superseded"] == [old_answer] and done["message"]["content"] == "second"
    assert engine.seen.bodies[-1]["messages"] == [{"role": "user", "content": "question"}]
    current = [m async for m in Message.objects.filter(conversation_id=started["conversation"]["id"]).current()]
    assert [m.content for m in current] == ["question", "second"]
    assert (await Message.objects.aget(pk=old_answer)).superseded


async def test_edit_and_resend_replaces_the_rest_of_the_conversation(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.scripts = [Script(content=["A1"]), Script(content=["A2"]), Script(content=["A1'"])]
    socket = await open_socket(personas["bob"])
    first = await send(socket, engine.model, "Q1")
    await finish(socket)
    conversation_id = first["conversation"]["id"]
    await send(socket, engine.model, "Q2", conversation_id=conversation_id)
    await finish(socket)
    await socket.send_json_to({"type": "edit", "message_id": first["messages"][0]["id"], "content": "Q1 edited"})
    edited = (await receive_until(socket, "started"))[-1]
    _deltas, done = await finish(socket)
    await socket.disconnect()
    assert len(edited["superseded"]) == 4 and done["message"]["content"] == "A1'"
    assert engine.seen.bodies[-1]["messages"] == [{"role": "user", "content": "Q1 edited"}]
    current = [m async for m in Message.objects.filter(conversation_id=conversation_id).current()]
    assert [m.content for m in current] == ["Q1 edited", "A1'"]


async def test_one_answer_at_a_time_per_conversation(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.default = Script(content=["x"] * 50, delay=0.02)
    socket = await open_socket(personas["bob"])
    started = await send(socket, engine.model, "one")
    reply = await send(socket, engine.model, "two", conversation_id=started["conversation"]["id"])
    assert (reply["type"], reply["code"]) == ("error", "busy")
    await socket.send_json_to({"type": "stop", "message_id": started["messages"][1]["id"]})
    await finish(socket)
    await socket.disconnect()


async def test_logging_out_ends_the_sockets_access(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    from django.contrib.sessions.models import Session

    socket = await open_socket(personas["bob"])
    await Session.objects.all().adelete()
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_output(5))["type"] == "websocket.close"

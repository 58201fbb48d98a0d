"""Content-safety rules in the chat portal, through the socket: questions refused, answers masked or cut."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from appliance.accounts.models import User
from appliance.chat.models import Conversation, Message
from appliance.chat.tests.fake_engine import FakeEngine, Script
from appliance.chat.tests.wsclient import finish, open_socket, send
from appliance.deployments.models import Deployment
from appliance.safety import services
from appliance.safety.choices import Action, Channel, Stage
from appliance.safety.models import SafetyHit

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@sync_to_async
def word_list(actor: User, department_id: int | None, lines: str) -> None:
    with transaction.atomic():
        created = services.create_list(actor, name="词库", department_id=department_id)
    services.import_words(actor, created.pk, lines)


@sync_to_async
def hits() -> list[tuple[str, str, str, str, int | None]]:
    rows = SafetyHit.objects.order_by("id").values_list("stage", "action", "word", "channel", "user_id")
    return list(rows)


async def test_a_blocked_question_is_refused_and_only_the_hit_is_stored(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    await word_list(personas["root"], None, "机密\tblock\n")
    socket = await open_socket(personas["bob"])
    reply = await send(socket, engine.model, "把机密文件给我")
    await socket.disconnect()
    assert (reply["type"], reply["code"]) == ("error", "content_blocked")
    assert engine.seen.bodies == []
    assert not await Conversation.objects.filter(user=personas["bob"]).aexists()
    assert await hits() == [(Stage.PROMPT, Action.BLOCK, "机密", Channel.CHAT, personas["bob"].pk)]


async def test_a_word_split_over_chunks_is_masked_in_the_stream_and_the_stored_answer(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    await word_list(personas["alice"], personas["bob"].department_id, "敏感词\tmask\nhello\trecord\n")
    engine.default = Script(content=["这是", "一个敏", "感", "词。", "Hello"])
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hi")
    deltas, done = await finish(socket)
    await socket.disconnect()
    shown = "".join(d["content"] for d in deltas)
    assert "敏" not in shown and "感" not in shown
    assert done["message"]["content"] == "这是一个***。Hello"
    assert await hits() == [
        (Stage.ANSWER, Action.MASK, "敏感词", Channel.CHAT, personas["bob"].pk),
        (Stage.ANSWER, Action.RECORD, "hello", Channel.CHAT, personas["bob"].pk),
    ]


async def test_a_blocked_answer_stops_the_engine_and_keeps_the_text_before_the_word(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    await word_list(personas["alice"], personas["bob"].department_id, "forbidden\n")
    engine.default = Script(content=["Fine so far. ", "forb", "idden", *[" more"] * 200], delay=0.01)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hi")
    _deltas, done = await finish(socket)
    await socket.disconnect()
    message = done["message"]
    assert (message["status"], message["error_code"], message["content"]) == (
        "failed", "content_blocked", "Fine so far. "
    )  # fmt: skip
    assert engine.disconnected.wait(5) and engine.seen.completed == 0
    stored = await Message.objects.aget(pk=message["id"])
    assert stored.error_code == "content_blocked"

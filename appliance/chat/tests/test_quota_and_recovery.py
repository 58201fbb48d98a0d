"""Chat answers are metered like gateway requests; answers of a dead process are recovered, not lost."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from appliance.accounts.models import User
from appliance.catalog.models import ProfileVersion
from appliance.chat import answers, live, services
from appliance.chat.models import Conversation, Message
from appliance.chat.planning import default_max_tokens
from appliance.chat.tests.fake_engine import FakeEngine, Script
from appliance.chat.tests.wsclient import finish, open_socket, receive_until, send
from appliance.deployments.engine_keys import engine_key
from appliance.deployments.models import Deployment, Instance
from appliance.quotas.drain import drain
from appliance.quotas.models import Quota, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.asyncio
async def test_an_answer_is_charged_and_shows_what_is_left(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    await Quota.objects.acreate(department=personas["bob"].department, tokens_per_day=100_000)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hi", max_tokens=64)
    _deltas, done = await finish(socket)
    await socket.disconnect()
    assert done["quota"]["tokens_per_day"] == {"limit": 100_000, "used": 15, "remaining": 99_985, "scope": "研发部"}
    await sync_to_async(drain)()
    record = await UsageRecord.objects.aget(user=personas["bob"])
    assert (record.status, record.prompt_tokens, record.completion_tokens) == ("ok", 11, 4)
    assert record.deployment_id == eng_model.pk and record.model == engine.model


@pytest.mark.asyncio
async def test_a_used_up_quota_refuses_before_the_engine_is_called(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    await Quota.objects.acreate(department=personas["bob"].department, tokens_per_day=20)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hi", max_tokens=64)
    _deltas, done = await finish(socket)
    await socket.disconnect()
    assert (done["message"]["status"], done["message"]["error_code"]) == ("failed", "quota_exceeded")
    assert engine.seen.bodies == []


@pytest.mark.asyncio
async def test_the_default_max_tokens_follows_the_quotas_cap(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    await Quota.objects.acreate(department=personas["bob"].department, max_tokens_per_request=100)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hi")
    await finish(socket)
    reply = await send(socket, engine.model, "again", max_tokens=500)  # explicit and above the cap
    _deltas, done = await finish(socket)
    await socket.disconnect()
    assert engine.seen.bodies[0]["max_tokens"] == 100 and len(engine.seen.bodies) == 1
    assert reply["type"] == "started" and done["message"]["error_code"] == "max_tokens_exceeded"


@pytest.mark.asyncio
async def test_a_stopped_answer_is_settled_as_cancelled(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.default = Script(content=["x"] * 300, delay=0.02)
    socket = await open_socket(personas["bob"])
    started = await send(socket, engine.model, "go")
    await receive_until(socket, "delta")
    await socket.send_json_to({"type": "stop", "message_id": started["messages"][1]["id"]})
    _deltas, done = await finish(socket)
    await socket.disconnect()
    await sync_to_async(drain)()
    record = await UsageRecord.objects.aget(user=personas["bob"])
    assert record.status == "cancelled" and 0 < record.completion_tokens < 300
    assert done["message"]["completion_tokens"] == record.completion_tokens


@pytest.mark.asyncio
async def test_deleting_a_conversation_stops_its_answer(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    engine.default = Script(content=["x"] * 300, delay=0.02)
    socket = await open_socket(personas["bob"])
    started = await send(socket, engine.model, "go")
    await receive_until(socket, "delta")
    await sync_to_async(services.delete_conversation)(personas["bob"], started["conversation"]["id"])
    await socket.disconnect()
    assert await asyncio.to_thread(engine.disconnected.wait, 5)
    assert not await Message.objects.filter(pk=started["messages"][1]["id"]).aexists()


def test_an_orphaned_answer_keeps_its_text_and_is_marked_interrupted(personas: dict[str, User]) -> None:
    conversation = Conversation.objects.create(user=personas["bob"], title="t")
    old = Message.objects.create(conversation=conversation, role="assistant", status="streaming", content="stale")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    young = Message.objects.create(conversation=conversation, role="assistant", status="streaming")
    async_to_sync(live.start)(old.pk)
    live.client().append(f"chat:live:{old.pk}:c", "the text it streamed")
    live.client().delete(f"chat:live:{old.pk}:hb")  # its process died: no more heartbeat

    from appliance.chat.tasks import recover_orphaned_answers

    assert recover_orphaned_answers() == 1
    old.refresh_from_db()
    assert (old.status, old.error_code, old.content) == ("interrupted", "interrupted", "the text it streamed")
    assert Message.objects.get(pk=young.pk).status == "streaming"  # too young to judge
    assert live.snapshot_sync(old.pk) is None
    assert answers.recover_orphans() == 0


@pytest.mark.asyncio
async def test_the_default_max_tokens_is_the_profiles(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    await ProfileVersion.objects.filter(pk=eng_model.profile_version_id).aupdate(default_max_tokens=321)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hi")
    await finish(socket)
    await send(socket, engine.model, "again", max_tokens=40)  # what the user sets wins
    await finish(socket)
    await socket.disconnect()
    assert [body["max_tokens"] for body in engine.seen.bodies] == [321, 40]


def test_default_max_tokens_leaves_half_the_context_to_the_prompt() -> None:
    assert default_max_tokens(8192, 2048) == 2048
    assert default_max_tokens(2048, 4000) == 1024
    assert default_max_tokens(100_000) == 4096  # no profile value: the console's default


@pytest.mark.asyncio
async def test_the_reservation_bounds_the_prompt_with_the_measured_template(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    """Issue 12: the old guess (two characters a token) held 158 tokens for 300 Chinese characters,
    which a tokenizer may bill as 300 or more, and nothing for the template's system prompt."""
    await Instance.objects.filter(deployment=eng_model).aupdate(template_tokens=40, message_tokens=6)
    # 40 (template) + 300 × 3 bytes + 1 (the text) + 64 (max_tokens) = 1005 reserved: one more than the budget.
    await Quota.objects.acreate(department=personas["bob"].department, tokens_per_day=1004)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "好" * 300, max_tokens=64)
    _deltas, done = await finish(socket)
    await socket.disconnect()
    assert (done["message"]["status"], done["message"]["error_code"]) == ("failed", "quota_exceeded")
    assert "tokens_per_day" in done["message"]["error_detail"] and engine.seen.bodies == []


@pytest.mark.asyncio
async def test_the_engine_is_sent_its_deployments_key(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment
) -> None:
    """Issue 12: engines are locked; the chat portal authenticates with the deployment's key."""
    engine.api_key = engine_key(eng_model.pk)
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hi", max_tokens=8)
    _deltas, done = await finish(socket)
    await socket.disconnect()
    assert done["message"]["status"] == "complete"
    assert engine.seen.authorizations[-1] == f"Bearer {engine.api_key}"
    another = await sync_to_async(engine_key)(eng_model.pk + 1)
    assert another != engine.api_key and engine.api_key.startswith("ek_")

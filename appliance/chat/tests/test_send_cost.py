"""What starting an answer costs the database (issue 11: the chat's per-answer work was its bottleneck
under load), and that the shortcuts taken for it give what the long way gives."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from appliance.chat import services
from appliance.chat.api.serializers import ConversationSerializer, MessageSerializer, conversation_data, message_data
from appliance.chat.models import Message
from appliance.chat.planning import ChatSettings, history
from appliance.core.exceptions import PermissionDenied

pytestmark = pytest.mark.django_db


def test_a_new_conversations_first_answer_is_two_inserts_once_model_and_quota_are_known(
    personas: Any, eng_model: Any
) -> None:
    alice = personas["alice"]
    settings = ChatSettings(model=eng_model.served_model_name, system_prompt="Answer briefly.")
    services.send(alice, None, "warm-up", settings)  # the model choice and the quota scopes are kept now
    with CaptureQueriesContext(connection) as queries:
        turn = services.send(alice, None, "你好，请介绍一下自己。", settings)
    statements = [q["sql"].split()[0] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert statements == ["INSERT", "INSERT"]  # the conversation; the question and the answer together
    question, answer = turn.messages
    assert (question.role, answer.role, answer.pk) == ("user", "assistant", turn.job.message_id)
    assert list(Message.objects.filter(conversation=turn.conversation).values_list("pk", "role", "content")) == [
        (question.pk, "user", "你好，请介绍一下自己。"), (answer.pk, "assistant", ""),
    ]  # fmt: skip
    # What the engine is asked is what reading the conversation back gives, and the rows hold the settings.
    assert turn.job.payload["messages"] == history(turn.conversation)
    assert turn.job.payload["messages"][0] == {"role": "system", "content": "Answer briefly."}
    stored = Message.objects.get(pk=turn.job.message_id)
    assert stored.max_tokens == turn.job.max_tokens
    assert turn.conversation.system_prompt == "Answer briefly."


def test_the_event_shapes_are_the_serializers(personas: Any, eng_model: Any) -> None:
    alice = personas["alice"]
    turn = services.send(alice, None, "Hello", ChatSettings(model=eng_model.served_model_name, temperature=0.3))
    Message.objects.filter(pk=turn.job.message_id).update(
        content="答案", status="complete", completion_tokens=12, duration_ms=480, ttft_ms=35, prompt_tokens=7
    )
    for message in [*turn.messages, *Message.objects.filter(conversation=turn.conversation)]:
        assert message_data(message) == dict(MessageSerializer(message).data)
    assert conversation_data(turn.conversation) == dict(ConversationSerializer(turn.conversation).data)


def test_the_model_choice_is_kept_per_department_not_per_user(personas: Any, eng_model: Any) -> None:
    """Who may use a deployment depends on the department (Deployment._use_scope): a colleague's answer
    finds the replicas the first one looked up, where a user alone rarely asks twice within the cache's
    seconds. Another department does not get them."""
    settings = ChatSettings(model=eng_model.served_model_name)
    services.send(personas["alice"], None, "warm-up", settings)
    with CaptureQueriesContext(connection) as queries:
        services.send(personas["bob"], None, "同一个部门", settings)  # the scopes are bob's own: looked up
    assert not [q for q in queries.captured_queries if "deployments_" in q["sql"]]
    with pytest.raises(PermissionDenied):
        services.send(personas["charlie"], None, "another department", settings)


def test_an_answers_end_is_two_updates_and_gives_what_reading_it_back_gives(personas: Any, eng_model: Any) -> None:
    from appliance.chat import answers

    turn = services.send(personas["alice"], None, "Hello", ChatSettings(model=eng_model.served_model_name))
    final = answers.Final(
        status="complete", reasoning="想一想", content="答案", error_code="", error_detail="", prompt_tokens=7,
        completion_tokens=12, usage_estimated=False, ttft_ms=35, reasoning_ms=20, duration_ms=480,
    )  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        ended = answers.finish_message(turn.job.message_id, final, turn.messages[-1])
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["UPDATE", "UPDATE"]  # the answer, its chat
    assert ended is not None
    assert message_data(ended) == message_data(Message.objects.get(pk=turn.job.message_id))

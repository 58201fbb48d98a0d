"""The conversations API per persona: a user sees only their own chats, whatever their role."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from appliance.accounts.models import User
from appliance.audit.models import AuditRecord
from appliance.chat.models import Conversation, Message
from appliance.chat.tests.factories import running_deployment
from appliance.chat.tests.fake_engine import FakeEngine
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment

pytestmark = pytest.mark.django_db

URL = "/api/v1/conversations/"


def chat(user: User, title: str, *texts: str, superseded: str = "") -> Conversation:
    conversation = Conversation.objects.create(user=user, title=title, model="fake-model")
    for i, text in enumerate(texts):
        Message.objects.create(conversation=conversation, role="user" if i % 2 == 0 else "assistant", content=text)
    if superseded:
        Message.objects.create(conversation=conversation, role="assistant", content=superseded, superseded=True)
    return conversation


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


@pytest.mark.parametrize("persona", ["root", "alice", "carol", "eve"])
def test_nobody_lists_or_opens_another_users_chat(
    api_as: Callable[[str], APIClient], personas: dict, persona: str
) -> None:
    theirs = chat(personas["bob"], "bob's plans", "q", "a")
    own = chat(personas[persona], "mine", "q")
    client = api_as(persona)
    assert ids(client.get(URL)) == [own.pk]
    for response in (
        client.get(f"{URL}{theirs.pk}/"),
        client.get(f"{URL}{theirs.pk}/messages/"),
        client.patch(f"{URL}{theirs.pk}/", {"title": "x"}, format="json"),
        client.delete(f"{URL}{theirs.pk}/"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert Conversation.objects.get(pk=theirs.pk).title == "bob's plans"


def test_anonymous_is_refused() -> None:
    assert APIClient().get(URL).status_code == 401


def test_search_finds_title_and_current_message_text(api_as: Callable[[str], APIClient], personas: dict) -> None:
    by_title = chat(personas["bob"], "发票报销流程", "hello")
    by_text = chat(personas["bob"], "other", "如何申请发票?", "answer")
    chat(personas["bob"], "old", "q", superseded="发票 in a replaced answer")
    chat(personas["carol"], "发票", "not bob's")
    assert sorted(ids(api_as("bob").get(URL, {"q": "发票"}))) == sorted([by_title.pk, by_text.pk])


def test_rename_and_settings(api_as: Callable[[str], APIClient], personas: dict) -> None:
    conversation = chat(personas["bob"], "old", "q")
    payload = {"title": "新标题", "task": "code", "temperature": 0.0, "max_tokens": 512, "system_prompt": "Be brief."}
    response = api_as("bob").patch(f"{URL}{conversation.pk}/", payload, format="json")
    assert response.status_code == 200, response.content
    assert {k: response.json()[k] for k in payload} == payload
    bad = api_as("bob").patch(f"{URL}{conversation.pk}/", {"temperature": 3, "colour": "red"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"


def test_delete_removes_messages_and_audits_without_the_text(
    api_as: Callable[[str], APIClient], personas: dict
) -> None:
    conversation = chat(personas["bob"], "private title", "private question", "answer")
    assert api_as("bob").delete(f"{URL}{conversation.pk}/").status_code == 204
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    record = AuditRecord.objects.get(action="chat.conversation.delete")
    assert record.actor_id == personas["bob"].pk and record.before == {"messages": 2, "model": "fake-model"}
    assert "private" not in record.target_label


def test_messages_are_the_current_ones_in_order(api_as: Callable[[str], APIClient], personas: dict) -> None:
    conversation = chat(personas["bob"], "t", "q1", "a1", "q2", superseded="replaced")
    response = api_as("bob").get(f"{URL}{conversation.pk}/messages/")
    assert [m["content"] for m in response.json()["results"]] == ["q1", "a1", "q2"]


def test_query_counts_do_not_grow_with_the_list(
    api_as: Callable[[str], APIClient], personas: dict, django_assert_max_num_queries: Any
) -> None:
    client = api_as("bob")
    chat(personas["bob"], "one", "q")
    with django_assert_max_num_queries(2):
        client.get(URL)
    for n in range(10):
        chat(personas["bob"], f"more {n}", "q", "a")
    with django_assert_max_num_queries(2):
        assert len(ids(client.get(URL))) == 11


def test_models_are_those_of_the_users_departments_with_their_engines_state(
    api_as: Callable[[str], APIClient], personas: dict, engine: FakeEngine, eng_model: Deployment
) -> None:
    dead = running_deployment(personas["alice"].department, personas["alice"], "dead-model", 9)
    dead.instances.update(state=State.UNREACHABLE)  # as the node worker leaves it when its node is lost
    response = api_as("carol").get("/api/v1/chat/models/")  # carol: 算法组, a sub-department of 研发部
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["results"]}
    assert models[engine.model]["status"] == "ok" and models["dead-model"]["status"] == "down"
    assert models[engine.model]["chat_defaults"]["code"] == 0.0
    assert models[engine.model]["chat_defaults"]["creative_writing"] == 1.5
    assert api_as("charlie").get("/api/v1/chat/models/").json()["results"] == []


def test_the_model_list_never_waits_on_an_engine(api_as: Callable[[str], APIClient], personas: dict) -> None:
    import socket

    hung = socket.socket()  # accepts connections (backlog) and never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    try:
        running_deployment(personas["alice"].department, personas["alice"], "hung", hung.getsockname()[1])
        began = time.monotonic()
        first = api_as("bob").get("/api/v1/chat/models/").json()["results"]
        # The node worker's row says running: the list says so, without asking the engine.
        assert time.monotonic() - began < 1 and first[0]["status"] == "ok"
    finally:
        hung.close()

"""The chat page renders for every signed-in role, fast, without waiting for any engine."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from appliance.accounts.models import User
from appliance.chat.tests.factories import running_deployment

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("persona", ["bob", "alice", "root", "eve"])
def test_page_renders_with_the_menu_entry(personas: dict[str, User], persona: str) -> None:
    client = Client()
    client.force_login(personas[persona])
    response = client.get("/chat/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="model-picker"' in body and 'id="chat-config"' in body
    assert 'href="/chat/"' in body  # the menu


def test_page_does_not_probe_engines(personas: dict[str, User], django_assert_max_num_queries: Any) -> None:
    running_deployment(personas["alice"].department, personas["alice"], "dead", 9)
    client = Client()
    client.force_login(personas["bob"])
    # session, user, conversations, the department's AI-label setting (issue 15) and one more: no engine call
    with django_assert_max_num_queries(5):
        assert client.get("/chat/").status_code == 200


def test_anonymous_is_sent_to_log_in() -> None:
    response = Client().get("/chat/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")

"""The AI-generated label setting: inheritance down the department tree, who may change it, the chat page."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from rest_framework.test import APIClient

from appliance.accounts.models import Department, User
from appliance.audit.models import AuditRecord
from appliance.safety import labels

pytestmark = pytest.mark.django_db
URL = "/api/v1/safety/ai-label/"
Api = Callable[[str], APIClient]


def test_shown_by_default_and_the_nearest_setting_wins(
    api_as: Api, personas: dict[str, User], departments: dict[str, Department]
) -> None:
    eng, eng_ml, fin = (departments[k].pk for k in ("eng", "eng_ml", "fin"))
    assert labels.shown_for(eng_ml) and labels.shown_for(None)
    assert api_as("alice").put(URL, {"department": eng, "enabled": False}, format="json").status_code == 200
    assert not labels.shown_for(eng) and not labels.shown_for(eng_ml) and labels.shown_for(fin)
    assert api_as("alice").put(URL, {"department": eng_ml, "enabled": True}, format="json").status_code == 200
    assert labels.shown_for(eng_ml) and not labels.shown_for(eng)
    assert api_as("root").put(URL, {"department": None, "enabled": False}, format="json").status_code == 200
    assert not labels.shown_for(fin) and labels.shown_for(eng_ml)
    assert api_as("bob").get(URL).json() == {"department": eng, "enabled": False}
    assert AuditRecord.objects.filter(action="safety.ai_label.set").count() == 3


def test_only_admins_of_the_department_change_it(api_as: Api, departments: dict[str, Department]) -> None:
    eng, fin = departments["eng"].pk, departments["fin"].pk
    for who, department in [("alice", None), ("alice", fin), ("bob", eng), ("eve", eng), ("dave", None)]:
        response = api_as(who).put(URL, {"department": department, "enabled": False}, format="json")
        assert response.status_code == 403, (who, department)
    assert api_as("charlie").get(URL, {"department": eng}).status_code == 404
    assert labels.shown_for(eng)


def test_the_chat_page_tells_the_script_whether_to_show_it(
    personas: dict[str, User], departments: dict[str, Department]
) -> None:
    client = Client()
    client.force_login(personas["bob"])
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert '"aiLabel": true' in client.get("/chat/").content.decode()
    page = client.get("/chat/").content.decode()
    assert '"AI-generated"' in page
    labels.set_shown(personas["alice"], departments["eng"].pk, False)
    assert '"aiLabel": false' in client.get("/chat/").content.decode()

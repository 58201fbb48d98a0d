"""Content-safety pages: word lists managed through the page, hits shown to auditors, in both languages."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from appliance.accounts.models import User
from appliance.safety import recording, rules
from appliance.safety.choices import Action, Channel, Stage
from appliance.safety.matcher import Matcher, Rule
from appliance.safety.models import WordList

pytestmark = pytest.mark.django_db


def _client(user: User, language: str = "zh-hans") -> Client:
    client = Client()
    client.force_login(user)
    client.post("/i18n/setlang/", {"language": language, "next": "/"})
    return client


def test_a_department_admin_creates_imports_disables_and_deletes_a_list(personas: dict[str, User]) -> None:
    alice = _client(personas["alice"])
    page = alice.get("/safety/word-lists/").content.decode()
    assert "敏感词库" in page and "所有人（全平台）" not in page  # alice may not create platform lists
    response = alice.post("/safety/word-lists/", {"name": "研发词库", "department": personas["alice"].department_id})
    assert response.status_code == 302
    created = WordList.objects.get(name="研发词库")
    upload = SimpleUploadedFile("w.txt", "机密\n内部\tmask\n".encode(), content_type="text/plain")
    alice.post(f"/safety/word-lists/{created.pk}/import/", {"file": upload, "default_action": Action.BLOCK})
    assert dict(created.rules.values_list("word", "action")) == {"机密": Action.BLOCK, "内部": Action.MASK}
    page = alice.get("/safety/word-lists/").content.decode()
    assert "新增 2 个词" in page
    alice.post(f"/safety/word-lists/{created.pk}/toggle/")
    created.refresh_from_db()
    assert not created.enabled
    rules.clear_cache()
    assert rules.matcher_for(personas["bob"].department_id) is None  # a disabled list applies to no one
    alice.post(f"/safety/word-lists/{created.pk}/delete/")
    assert not WordList.objects.filter(pk=created.pk).exists()


def test_members_cannot_change_lists_through_the_page(personas: dict[str, User]) -> None:
    platform = WordList.objects.create(name="platform")
    bob = _client(personas["bob"])
    bob.post(f"/safety/word-lists/{platform.pk}/delete/")
    bob.post(f"/safety/word-lists/{platform.pk}/import/", {"text": "x", "default_action": Action.BLOCK})
    assert WordList.objects.filter(pk=platform.pk).exists() and platform.rules.count() == 0
    assert "platform" not in bob.get("/safety/word-lists/").content.decode()


def test_auditors_see_the_hits_in_both_languages(personas: dict[str, User]) -> None:
    bob = personas["bob"]
    matcher = Matcher([Rule(0, 0, "平台词库", "机密", Action.BLOCK)])
    where = recording.Context(bob.pk, "", bob.department_id, Channel.CHAT, "m1", "")
    recording.record_hits(where, Stage.PROMPT, matcher.find("机密"))
    zh = _client(personas["eve"]).get("/safety/hits/").content.decode()
    assert "内容安全命中记录" in zh and "平台词库" in zh and "拦截请求" in zh and "bob" in zh
    en = _client(personas["eve"], "en").get("/safety/hits/?action=block").content.decode()
    assert "Content-safety hits" in en and "Block the request" in en
    assert "平台词库" not in _client(personas["dave"]).get("/safety/hits/").content.decode()
    assert "平台词库" not in _client(personas["eve"]).get("/safety/hits/?action=mask").content.decode()


def test_the_ai_label_is_switched_per_department_on_the_page(personas: dict[str, User]) -> None:
    from appliance.safety import labels

    eng = personas["alice"].department_id
    alice = _client(personas["alice"], "en")
    page = alice.get("/safety/word-lists/").content.decode()
    assert "AI-generated label" in page and "shown" in page
    alice.post("/safety/ai-label/", {"department": eng})  # the checkbox left empty: not shown
    assert not labels.shown_for(eng)
    assert "not shown" in alice.get("/safety/word-lists/").content.decode()
    alice.post("/safety/ai-label/", {"department": ""})  # the platform's default is not hers to set
    assert labels.shown_for(None)

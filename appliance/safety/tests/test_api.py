"""The word-list and hit API with personas: who manages which list, import/export, who reads the hits."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from appliance.accounts.models import Department, User
from appliance.audit.models import AuditRecord
from appliance.safety import recording, rules
from appliance.safety.choices import Action, Channel, Stage
from appliance.safety.models import SafetyHit, WordList

pytestmark = pytest.mark.django_db
LISTS = "/api/v1/safety/word-lists/"
HITS = "/api/v1/safety/hits/"
Api = Callable[[str], APIClient]


@pytest.fixture(autouse=True)
def fresh_rules() -> None:
    rules.clear_cache()


def make_list(api_as: Api, who: str, department: int | None, name: str = "words") -> dict:
    response = api_as(who).post(LISTS, {"name": name, "department": department}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_who_may_create_which_list(api_as: Api, departments: dict[str, Department]) -> None:
    eng, fin = departments["eng"].pk, departments["fin"].pk
    assert make_list(api_as, "root", None)["department"] is None
    assert make_list(api_as, "alice", eng)["department_name"] == departments["eng"].name
    assert make_list(api_as, "alice", departments["eng_ml"].pk)["department"] == departments["eng_ml"].pk
    for who, department in [("alice", None), ("alice", fin), ("bob", eng), ("eve", None), ("eve", eng)]:
        response = api_as(who).post(LISTS, {"name": "x", "department": department}, format="json")
        assert response.status_code == 403, (who, department)
    assert AuditRecord.objects.filter(action="safety.list.create").count() == 3


def test_department_admins_see_platform_lists_but_change_only_their_subtree(
    api_as: Api, departments: dict[str, Department]
) -> None:
    platform = make_list(api_as, "root", None)
    fin = make_list(api_as, "dave", departments["fin"].pk)
    alice = api_as("alice")
    assert {row["id"] for row in alice.get(LISTS).json()["results"]} == {platform["id"]}
    assert alice.patch(f"{LISTS}{platform['id']}/", {"enabled": False}, format="json").status_code == 404
    assert alice.get(f"{LISTS}{fin['id']}/").status_code == 404
    assert alice.post(f"{LISTS}{platform['id']}/import/", {"text": "x"}, format="json").status_code == 404
    assert api_as("bob").get(LISTS).json()["results"] == []
    assert api_as("bob").get(f"{LISTS}{platform['id']}/export/").status_code == 404
    assert api_as("eve").get(LISTS).json()["count"] == 2
    assert api_as("eve").delete(f"{LISTS}{fin['id']}/").status_code == 404
    assert api_as("dave").delete(f"{LISTS}{fin['id']}/").status_code == 204


def test_thousands_of_chinese_and_english_words_import_from_a_file_and_export_again(
    api_as: Api, departments: dict[str, Department]
) -> None:
    created = make_list(api_as, "alice", departments["eng"].pk)
    words = [f"敏感词{i}" for i in range(3000)] + [f"Secret{i}\tmask" for i in range(2000)]
    text = "\ufeff# 部门词库\n" + "\n".join(words) + "\n\nplain\trecord\n"
    upload = SimpleUploadedFile("words.txt", text.encode(), content_type="text/plain")
    response = api_as("alice").post(f"{LISTS}{created['id']}/import/", {"file": upload}, format="multipart")
    assert response.status_code == 200, response.content
    assert response.json() == {"added": 5001, "updated": 0, "skipped": 0, "total": 5001}
    again = api_as("alice").post(
        f"{LISTS}{created['id']}/import/",
        {"text": "敏感词1\tmask\n敏感词2\n", "default_action": "block"},
        format="json",
    )
    assert again.json() == {"added": 0, "updated": 1, "skipped": 1, "total": 5001}
    exported = api_as("alice").get(f"{LISTS}{created['id']}/export/")
    assert exported["Content-Type"] == "text/plain; charset=utf-8"
    lines = exported.content.decode().splitlines()
    assert len(lines) == 5001 and lines[0] == "敏感词0\tblock" and "敏感词1\tmask" in lines and "plain\trecord" in lines
    assert api_as("alice").get(f"{LISTS}{created['id']}/").json()["rule_count"] == 5001
    matcher = rules.matcher_for(departments["eng_ml"].pk)  # a sub-department inherits the list
    assert matcher is not None and matcher.size == 5001
    assert rules.matcher_for(departments["fin"].pk) is None


def test_a_bad_line_is_refused_with_its_number(api_as: Api, departments: dict[str, Department]) -> None:
    created = make_list(api_as, "alice", departments["eng"].pk)
    response = api_as("alice").post(
        f"{LISTS}{created['id']}/import/", {"text": "ok\nbad\tnuke\n"}, format="json", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 400 and "Line 2" in response.json()["error"]["message"]
    assert WordList.objects.get(pk=created["id"]).rules.count() == 0


def test_hits_are_read_by_auditors_and_the_departments_admins_only(
    api_as: Api, personas: dict[str, User], departments: dict[str, Department], settings: object
) -> None:
    created = make_list(api_as, "alice", departments["eng"].pk)
    api_as("alice").post(f"{LISTS}{created['id']}/import/", {"text": "机密"}, format="json")
    matcher = rules.matcher_for(departments["eng"].pk)
    assert matcher is not None
    bob = personas["bob"]
    where = recording.Context(bob.pk, "", bob.department_id, Channel.GATEWAY, "m1", "req-1")
    assert recording.record_hits(where, Stage.PROMPT, matcher.find("这是机密")) == 1
    row = api_as("eve").get(HITS).json()["results"][0]
    assert {k: row[k] for k in ("username", "list_name", "word", "action", "stage", "channel", "excerpt")} == {
        "username": "bob", "list_name": "words", "word": "机密", "action": Action.BLOCK, "stage": Stage.PROMPT,
        "channel": Channel.GATEWAY, "excerpt": "",
    }  # fmt: skip
    assert api_as("alice").get(HITS).json()["count"] == 1
    assert api_as("alice").get(HITS, {"action": "mask"}).json()["count"] == 0
    assert api_as("dave").get(HITS).json()["count"] == 0
    assert api_as("bob").get(HITS).json()["count"] == 0
    assert api_as("eve").delete(f"{HITS}{row['id']}/").status_code == 405
    assert SafetyHit.objects.count() == 1


def test_the_text_is_kept_only_when_the_setting_says_so(personas: dict[str, User], settings: object) -> None:
    from appliance.safety.matcher import Matcher, Rule

    settings.APPLIANCE_SAFETY_RECORD_TEXT = True  # type: ignore[attr-defined]
    matcher = Matcher([Rule(0, 0, "l", "机密", Action.RECORD)])
    text = "前文" * 20 + "机密" + "后文" * 20
    hit = matcher.find(text)[0]
    assert recording.excerpt(text, hit) == "前文" * 10 + "机密" + "后文" * 10

"""The profile, catalog and calculator pages call the same services and gate as the API."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from appliance.accounts.models import User
from appliance.audit.models import AuditRecord
from appliance.catalog.models import CustomModel, Profile
from appliance.catalog.tests.conftest import MakeNode
from appliance.catalog.tests.test_api_catalog import custom_entry

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _form(profile: Profile, **changes: object) -> dict[str, object]:
    version = profile.current_version
    assert version is not None
    data: dict[str, object] = {"slug": profile.slug, "name": profile.name, "tier": profile.tier}
    for key, value in version.spec().items():
        data[key] = json.dumps(value) if key in ("extra_args", "chat_defaults") else ("" if value is None else value)
    return {**data, **changes}


@pytest.mark.parametrize("persona", ["root", "alice", "eve"])
def test_pages_render_in_chinese_with_menu(personas: dict, seeded: dict, persona: str) -> None:
    client = _client(personas[persona])
    for url in ("/profiles/", f"/profiles/{seeded['basic-7b'].pk}/", "/catalog/", "/capacity/"):
        assert client.get(url).status_code == 200, url
    body = client.get("/profiles/").content.decode()
    assert "基础版 Basic 7B" in body and "SKU 配置" in body and 'href="/capacity/"' in body


def test_profiles_page_shows_fit(personas: dict, seeded: dict, make_node: MakeNode) -> None:
    make_node("gpu-01", "2x RTX 4090 24GB")
    body = _client(personas["root"]).get("/profiles/").content.decode()
    assert body.count('data-status="fits"') == 2  # basic-7b and smollm2-cpu
    assert body.count('data-status="no_fit"') == 2


def test_admin_edits_profile_into_a_new_version(personas: dict, seeded: dict[str, Profile]) -> None:
    profile = seeded["standard-32b"]
    resp = _client(personas["root"]).post(f"/profiles/{profile.pk}/", _form(profile, max_model_len=8192))
    assert resp.status_code == 302
    profile.refresh_from_db()
    assert profile.current_version is not None and profile.current_version.number == 2
    assert AuditRecord.objects.filter(action="profile.update", via="web").exists()
    body = _client(personas["root"]).get(f"/profiles/{profile.pk}/").content.decode()
    assert "v2" in body and "v1" in body


def test_bad_edit_shows_the_error(personas: dict, seeded: dict[str, Profile]) -> None:
    profile = seeded["basic-7b"]
    resp = _client(personas["root"]).post(f"/profiles/{profile.pk}/", _form(profile, tensor_parallel=3))
    assert resp.status_code == 200 and "tensor_parallel" in resp.content.decode()


def test_department_admin_cannot_edit_from_page(personas: dict, seeded: dict[str, Profile]) -> None:
    profile = seeded["basic-7b"]
    resp = _client(personas["alice"]).post(f"/profiles/{profile.pk}/", _form(profile, max_model_len=4096))
    assert resp.status_code == 200 and "Only platform admins" in resp.content.decode()
    profile.refresh_from_db()
    assert profile.current_version is not None and profile.current_version.number == 1


def test_create_profile_from_page(personas: dict, seeded: dict[str, Profile]) -> None:
    data = _form(seeded["basic-7b"], slug="basic-7b-bis", name="Basic bis", extra_args="")
    resp = _client(personas["root"]).post("/profiles/", data)
    assert resp.status_code == 302
    assert Profile.objects.get(slug="basic-7b-bis").current_version.extra_args == {}  # type: ignore[union-attr]


def test_archive_from_page(personas: dict, seeded: dict[str, Profile]) -> None:
    pk = seeded["smollm2-cpu"].pk
    assert _client(personas["bob"]).post(f"/profiles/{pk}/archive/").status_code == 302
    assert Profile.objects.get(pk=pk).archived_at is None
    assert _client(personas["root"]).post(f"/profiles/{pk}/archive/").status_code == 302
    assert Profile.objects.get(pk=pk).archived_at is not None


def test_catalog_page_adds_and_removes_custom_models(personas: dict) -> None:
    client = _client(personas["root"])
    assert client.post("/catalog/", {"entry": json.dumps(custom_entry())}).status_code == 302
    body = client.get("/catalog/").content.decode()
    assert "acme-qwen-7b-chat" in body and "deepseek-r1-ud-iq1_s" in body and "671.0 B" in body
    resp = client.post("/catalog/", {"entry": json.dumps({**custom_entry("x2"), "num_hidden_layers": 0})})
    assert resp.status_code == 200 and "num_hidden_layers" in resp.content.decode()
    assert client.post("/catalog/", {"entry": "{not json"}).status_code == 200
    assert client.post("/catalog/acme-qwen-7b-chat/delete/").status_code == 302
    assert not CustomModel.objects.exists()


def test_calculator_page_has_the_form_and_presets(personas: dict, seeded: dict) -> None:
    body = _client(personas["alice"]).get("/capacity/").content.decode()
    assert 'id="capacity-form"' in body and "console/capacity.js" in body
    assert 'data-key="max_concurrent_sequences"' in body and "standard-32b" in body
    assert 'data-api="/api/v1/capacity/"' in body

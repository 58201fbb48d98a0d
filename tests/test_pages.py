"""Server-rendered pages call the same services and gate as the API."""

from __future__ import annotations

import pytest
from django.test import Client

from appliance.accounts.models import ApiKey, Department, User
from appliance.audit.models import AuditRecord

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_admin_pages_render_in_chinese_by_default(personas: dict) -> None:
    client = _client(personas["root"])
    for url in ("/", "/departments/", "/users/", "/api-keys/", "/audit-log/", "/password/"):
        resp = client.get(url)
        assert resp.status_code == 200, url
    assert "部门" in client.get("/departments/").content.decode()


def test_language_switch_to_english(personas: dict) -> None:
    client = _client(personas["root"])
    client.post("/i18n/setlang/", {"language": "en", "next": "/departments/"})
    assert "Departments" in client.get("/departments/").content.decode()


def test_create_department_page(personas: dict) -> None:
    resp = _client(personas["root"]).post("/departments/", {"code": "ops", "name": "运维部", "parent_id": ""})
    assert resp.status_code == 302
    assert Department.objects.filter(code="ops").exists()
    assert AuditRecord.objects.filter(action="department.create", via="web").exists()


def test_duplicate_department_page_shows_error(personas: dict) -> None:
    resp = _client(personas["root"]).post("/departments/", {"code": "eng", "name": "x"})
    assert resp.status_code == 200 and "already exists" in resp.content.decode()


def test_member_gets_portal_and_no_admin_menu(personas: dict) -> None:
    body = _client(personas["bob"]).get("/").content.decode()
    assert 'class="portal"' in body and "/audit-log/" not in body


def test_member_cannot_create_user_from_page(personas: dict, departments: dict) -> None:
    resp = _client(personas["bob"]).post(
        "/users/", {"username": "x", "role": "member", "department_id": departments["eng"].pk}
    )
    assert resp.status_code == 200 and not User.objects.filter(username="x").exists()


def test_key_page_shows_secret_once_and_revokes(personas: dict) -> None:
    client = _client(personas["bob"])
    body = client.post("/api-keys/", {"name": "chatbox"}).content.decode()
    key = ApiKey.objects.get(name="chatbox")
    assert f"ak_{key.prefix}_" in body and 'data-testid="new-key"' in body
    assert 'data-testid="new-key"' not in client.get("/api-keys/").content.decode()
    client.post(f"/api-keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_user_cannot_revoke_other_department_key_from_page(personas: dict) -> None:
    from django.db import transaction

    from appliance.accounts.services import create_api_key

    with transaction.atomic():
        key, _ = create_api_key(personas["charlie"], name="c")
    _client(personas["alice"]).post(f"/api-keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is None

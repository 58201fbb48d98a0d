"""API keys minted by API keys (issue 12, item 4).

A key creates keys only when it was given that scope; a key created by a key expires no later than
its parent and is revoked with it; auditors revoke their own keys.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from appliance.accounts import services
from appliance.accounts.models import ApiKey, User
from appliance.audit.models import AuditRecord

pytestmark = pytest.mark.django_db


def _bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _key(user: User, **kw: object) -> tuple[ApiKey, str]:
    with transaction.atomic():
        return services.create_api_key(user, name=f"{user.username}-parent", **kw)  # type: ignore[arg-type]


def test_a_plain_key_cannot_mint_keys(personas: dict) -> None:
    _parent, secret = _key(personas["bob"])
    resp = _bearer(secret).post("/api/v1/api-keys/", {"name": "copy"}, format="json")
    assert resp.status_code == 403, resp.content
    assert ApiKey.objects.filter(user=personas["bob"]).count() == 1


def test_a_session_grants_the_scope_and_the_child_never_outlives_its_parent(
    api_as: Callable[[str], APIClient], personas: dict
) -> None:
    expires = (timezone.now() + timedelta(days=7)).isoformat()
    resp = api_as("bob").post(
        "/api/v1/api-keys/", {"name": "ci", "can_create_keys": True, "expires_at": expires}, format="json"
    )
    assert resp.status_code == 201, resp.content
    parent = ApiKey.objects.get(pk=resp.json()["id"])
    assert parent.can_create_keys and parent.expires_at is not None
    client = _bearer(resp.json()["key"])

    # No expiry asked: the parent's.
    child = client.post("/api/v1/api-keys/", {"name": "child"}, format="json")
    assert child.status_code == 201, child.content
    child_key = ApiKey.objects.get(pk=child.json()["id"])
    assert child_key.parent_id == parent.pk and child_key.expires_at == parent.expires_at

    # A later expiry than the parent's is refused.
    later = (timezone.now() + timedelta(days=30)).isoformat()
    resp = client.post("/api/v1/api-keys/", {"name": "longer", "expires_at": later}, format="json")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_expiry"


def test_revoking_the_parent_revokes_its_descendants(personas: dict) -> None:
    parent, secret = _key(personas["bob"], can_create_keys=True)
    child = _bearer(secret).post("/api/v1/api-keys/", {"name": "child", "can_create_keys": True}, format="json")
    assert child.status_code == 201, child.content
    grandchild = _bearer(child.json()["key"]).post("/api/v1/api-keys/", {"name": "grandchild"}, format="json")
    assert grandchild.status_code == 201, grandchild.content

    with transaction.atomic():
        services.revoke_api_key(personas["bob"], parent.pk)
    assert not ApiKey.objects.filter(user=personas["bob"], revoked_at__isnull=True).exists()
    assert _bearer(grandchild.json()["key"]).get("/api/v1/users/me/").status_code == 401
    assert AuditRecord.objects.filter(action="api_key.revoke").count() == 3


def test_a_key_without_the_scope_cannot_hand_it_out(personas: dict, api_as: Callable[[str], APIClient]) -> None:
    _parent, secret = _key(personas["bob"], can_create_keys=True)
    child = _bearer(secret).post("/api/v1/api-keys/", {"name": "child"}, format="json")
    assert child.status_code == 201 and child.json()["can_create_keys"] is False
    resp = _bearer(child.json()["key"]).post("/api/v1/api-keys/", {"name": "grandchild"}, format="json")
    assert resp.status_code == 403


def test_auditor_revokes_own_key(api_as: Callable[[str], APIClient], personas: dict) -> None:
    key, _secret = _key(personas["eve"])
    resp = api_as("eve").post(f"/api/v1/api-keys/{key.pk}/revoke/")
    assert resp.status_code == 200, resp.content
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_auditor_still_cannot_revoke_others_keys(api_as: Callable[[str], APIClient], personas: dict) -> None:
    key, _secret = _key(personas["bob"])
    assert api_as("eve").post(f"/api/v1/api-keys/{key.pk}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_auditor_revokes_own_key_from_the_page(personas: dict) -> None:
    from django.test import Client

    key, _secret = _key(personas["eve"])
    other, _other_secret = _key(personas["bob"])
    client = Client()
    client.force_login(personas["eve"])
    page = client.get("/api-keys/").content.decode()
    assert f"/api-keys/{key.pk}/revoke/" in page and f"/api-keys/{other.pk}/revoke/" not in page
    client.post(f"/api-keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None

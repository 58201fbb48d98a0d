"""Role hierarchy (issue 12, item 1): a principal acts on a user only if it outranks them.

platform admin > department admin > member / auditor. Department admins see every user of their
subtree but change only those they outrank; the same gate serves the API, the pages and the services.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from appliance.accounts import services
from appliance.accounts.choices import Role
from appliance.accounts.models import ApiKey, User
from appliance.core.exceptions import NotFound, PermissionDenied
from conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss(personas: dict, departments: dict) -> User:
    """A platform admin who belongs to alice's department (the replayed finding)."""
    return make_user("boss", Role.PLATFORM_ADMIN, departments["eng"])


@pytest.fixture
def peer(personas: dict, departments: dict) -> User:
    """A department admin of a sub-department of alice's: same rank, so out of alice's reach."""
    return make_user("peer", Role.DEPARTMENT_ADMIN, departments["eng_ml"])


def test_department_admin_cannot_reset_platform_admin_password(api_as: Callable[[str], APIClient], boss: User) -> None:
    resp = api_as("alice").post(f"/api/v1/users/{boss.pk}/password/", {"new_password": "taken-over-pw-42"})
    assert resp.status_code == 403, resp.content
    boss.refresh_from_db()
    assert boss.check_password(PASSWORD) and not boss.check_password("taken-over-pw-42")


def test_department_admin_cannot_deactivate_or_edit_platform_admin(
    api_as: Callable[[str], APIClient], boss: User
) -> None:
    client = api_as("alice")
    assert client.patch(f"/api/v1/users/{boss.pk}/", {"is_active": False}, format="json").status_code == 403
    assert client.patch(f"/api/v1/users/{boss.pk}/", {"display_name": "x"}, format="json").status_code == 403
    assert client.patch(f"/api/v1/users/{boss.pk}/", {"email": "a@evil.example"}, format="json").status_code == 403
    boss.refresh_from_db()
    assert boss.is_active and boss.display_name == "Boss" and boss.email == ""
    # Seeing the user is still allowed: the department admin lists their whole subtree.
    assert client.get(f"/api/v1/users/{boss.pk}/").status_code == 200


def test_department_admin_cannot_act_on_a_peer_department_admin(api_as: Callable[[str], APIClient], peer: User) -> None:
    client = api_as("alice")
    assert client.post(f"/api/v1/users/{peer.pk}/password/", {"new_password": "taken-over-pw-42"}).status_code == 403
    assert client.patch(f"/api/v1/users/{peer.pk}/", {"is_active": False}, format="json").status_code == 403
    peer.refresh_from_db()
    assert peer.is_active and peer.check_password(PASSWORD)


def test_department_admin_cannot_touch_themselves_through_admin_actions(
    api_as: Callable[[str], APIClient], personas: dict
) -> None:
    alice = personas["alice"]
    resp = api_as("alice").patch(f"/api/v1/users/{alice.pk}/", {"department": None}, format="json")
    assert resp.status_code == 403
    alice.refresh_from_db()
    assert alice.department is not None


def test_department_admin_still_manages_members(api_as: Callable[[str], APIClient], personas: dict) -> None:
    bob = personas["bob"]
    assert (
        api_as("alice").post(f"/api/v1/users/{bob.pk}/password/", {"new_password": "a-new-pw-for-bob-1"}).status_code
        == 204
    )
    assert api_as("alice").patch(f"/api/v1/users/{bob.pk}/", {"is_active": False}, format="json").status_code == 200


def test_department_admin_cannot_grant_department_admin(
    api_as: Callable[[str], APIClient], personas: dict, departments: dict
) -> None:
    body = {"username": "newadmin", "department": departments["eng_ml"].pk, "role": "department_admin"}
    assert api_as("alice").post("/api/v1/users/", body, format="json").status_code == 403
    resp = api_as("alice").patch(f"/api/v1/users/{personas['bob'].pk}/", {"role": "department_admin"}, format="json")
    assert resp.status_code == 403
    assert User.objects.get(pk=personas["bob"].pk).role == Role.MEMBER


def test_department_admin_cannot_mint_keys_for_a_privileged_service_account(
    api_as: Callable[[str], APIClient], personas: dict, departments: dict
) -> None:
    with transaction.atomic():
        svc = services.create_user(
            personas["root"],
            username="svc-admin",
            department_id=departments["eng"].pk,
            role=Role.DEPARTMENT_ADMIN,
            is_service_account=True,
        )
    resp = api_as("alice").post("/api/v1/api-keys/", {"name": "x", "user": svc.pk}, format="json")
    assert resp.status_code in (400, 403)
    assert not ApiKey.objects.filter(user=svc).exists()


def test_department_admin_cannot_revoke_a_platform_admins_key(api_as: Callable[[str], APIClient], boss: User) -> None:
    with transaction.atomic():
        key, _secret = services.create_api_key(boss, name="boss-key")
    assert api_as("alice").post(f"/api/v1/api-keys/{key.pk}/revoke/").status_code in (403, 404)
    key.refresh_from_db()
    assert key.revoked_at is None


def test_page_toggle_cannot_deactivate_a_platform_admin(boss: User) -> None:
    client = Client()
    client.force_login(User.objects.get(username="alice"))
    client.post(f"/users/{boss.pk}/toggle-active/")
    boss.refresh_from_db()
    assert boss.is_active


def test_services_enforce_the_rank_too(personas: dict, boss: User) -> None:
    with pytest.raises((PermissionDenied, NotFound)), transaction.atomic():
        services.set_password(personas["alice"], boss.pk, "taken-over-pw-42")
    with pytest.raises((PermissionDenied, NotFound)), transaction.atomic():
        services.update_user(personas["alice"], boss.pk, is_active=False)


def test_platform_admin_manages_everyone(api_as: Callable[[str], APIClient], boss: User, peer: User) -> None:
    client = api_as("root")
    assert client.patch(f"/api/v1/users/{peer.pk}/", {"is_active": False}, format="json").status_code == 200
    assert client.post(f"/api/v1/users/{boss.pk}/password/", {"new_password": "a-new-pw-for-boss-1"}).status_code == 204


def test_department_admin_cannot_set_a_quota_on_a_platform_admin_or_peer(
    api_as: Callable[[str], APIClient], boss: User, peer: User
) -> None:
    for target in (boss, peer):
        resp = api_as("alice").post("/api/v1/quotas/", {"user": target.pk, "requests_per_minute": 1}, format="json")
        assert resp.status_code == 403, resp.content


def test_department_admin_cannot_change_a_platform_admins_quota(api_as: Callable[[str], APIClient], boss: User) -> None:
    created = api_as("root").post("/api/v1/quotas/", {"user": boss.pk, "requests_per_minute": 100}, format="json")
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert api_as("alice").patch(f"/api/v1/quotas/{pk}/", {"requests_per_minute": 1}, format="json").status_code in (
        403,
        404,
    )
    assert api_as("alice").delete(f"/api/v1/quotas/{pk}/").status_code in (403, 404)
    assert api_as("root").get(f"/api/v1/quotas/{pk}/").json()["requests_per_minute"] == 100

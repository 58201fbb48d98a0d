from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from appliance.accounts.models import ApiKey, User
from appliance.audit.models import AuditRecord

pytestmark = pytest.mark.django_db


def test_unauthenticated_gets_401_with_error_shape() -> None:
    resp = APIClient().get("/api/v1/users/")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "not_authenticated"


def test_platform_admin_creates_department_and_it_is_audited(api_as: Callable[[str], APIClient]) -> None:
    resp = api_as("root").post("/api/v1/departments/", {"code": "hr", "name": "人事部"}, format="json")
    assert resp.status_code == 201, resp.content
    rec = AuditRecord.objects.get(action="department.create")
    assert rec.after is not None
    assert rec.actor_name == "root" and rec.target_label == "人事部" and rec.after["code"] == "hr"


def test_duplicate_department_is_409_and_changes_nothing(api_as: Callable[[str], APIClient]) -> None:
    before = AuditRecord.objects.count()
    resp = api_as("root").post("/api/v1/departments/", {"code": "eng", "name": "Another"}, format="json")
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "duplicate"
    assert AuditRecord.objects.count() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "x", "name": "X", "colour": "red"}, "colour"),
        ({"code": "x" * 65, "name": "X"}, "code"),
        ({"code": "x", "name": ["not", "a", "string"]}, "name"),
        ({"code": "bad code!", "name": "X"}, "code"),
    ],
)
def test_bad_department_input_is_400_naming_the_field(
    api_as: Callable[[str], APIClient], body: dict[str, object], field: str
) -> None:
    resp = api_as("root").post("/api/v1/departments/", body, format="json")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "invalid" and field in error["details"]


def test_department_admin_cannot_create_departments(api_as: Callable[[str], APIClient]) -> None:
    resp = api_as("alice").post("/api/v1/departments/", {"code": "x", "name": "X"}, format="json")
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "permission_denied"


def test_department_admin_sees_own_subtree_only(api_as: Callable[[str], APIClient]) -> None:
    names = {u["username"] for u in api_as("alice").get("/api/v1/users/").json()["results"]}
    assert names == {"alice", "bob", "carol"}


def test_cross_department_object_is_404(api_as: Callable[[str], APIClient], personas: dict[str, User]) -> None:
    resp = api_as("alice").get(f"/api/v1/users/{personas['charlie'].pk}/")
    assert resp.status_code == 404
    resp = api_as("alice").patch(f"/api/v1/users/{personas['charlie'].pk}/", {"display_name": "x"}, format="json")
    assert resp.status_code == 404
    assert User.objects.get(pk=personas["charlie"].pk).display_name == "Charlie"


def test_member_sees_only_self(api_as: Callable[[str], APIClient]) -> None:
    results = api_as("bob").get("/api/v1/users/").json()["results"]
    assert [u["username"] for u in results] == ["bob"]


def test_member_cannot_create_users(api_as: Callable[[str], APIClient], departments: dict) -> None:
    resp = api_as("bob").post("/api/v1/users/", {"username": "x", "department": departments["eng"].pk}, format="json")
    assert resp.status_code == 403


def test_department_admin_creates_user_in_own_department(api_as: Callable[[str], APIClient], departments: dict) -> None:
    body = {"username": "frank", "department": departments["eng_ml"].pk, "password": "a-long-enough-pw-7"}
    resp = api_as("alice").post("/api/v1/users/", body, format="json")
    assert resp.status_code == 201, resp.content
    assert User.objects.get(username="frank").check_password("a-long-enough-pw-7")
    rec = AuditRecord.objects.get(action="user.create", target_label="frank")
    assert rec.after is not None
    assert "password" not in rec.after and rec.department_id == departments["eng_ml"].pk


def test_department_admin_cannot_create_user_elsewhere(api_as: Callable[[str], APIClient], departments: dict) -> None:
    resp = api_as("alice").post("/api/v1/users/", {"username": "x", "department": departments["fin"].pk}, format="json")
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_department"
    assert not User.objects.filter(username="x").exists()


def test_department_admin_cannot_grant_platform_admin(api_as: Callable[[str], APIClient], departments: dict) -> None:
    body = {"username": "x", "department": departments["eng"].pk, "role": "platform_admin"}
    assert api_as("alice").post("/api/v1/users/", body, format="json").status_code == 403


def test_duplicate_username_is_409(api_as: Callable[[str], APIClient], departments: dict) -> None:
    resp = api_as("root").post(
        "/api/v1/users/", {"username": "bob", "department": departments["eng"].pk}, format="json"
    )
    assert resp.status_code == 409


def test_last_platform_admin_cannot_demote_self(api_as: Callable[[str], APIClient], personas: dict) -> None:
    resp = api_as("root").patch(f"/api/v1/users/{personas['root'].pk}/", {"role": "member"}, format="json")
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "last_platform_admin"
    assert User.objects.get(pk=personas["root"].pk).role == "platform_admin"


def test_disable_user_is_audited_and_user_kept(api_as: Callable[[str], APIClient], personas: dict) -> None:
    resp = api_as("alice").patch(f"/api/v1/users/{personas['bob'].pk}/", {"is_active": False}, format="json")
    assert resp.status_code == 200
    assert User.objects.get(pk=personas["bob"].pk).is_active is False
    assert AuditRecord.objects.filter(action="user.disable", target_id=str(personas["bob"].pk)).exists()


def test_auditor_reads_everything_and_writes_nothing(api_as: Callable[[str], APIClient], departments: dict) -> None:
    client = api_as("eve")
    assert client.get("/api/v1/users/").json()["count"] == 7
    assert client.get("/api/v1/audit-log/").status_code == 200
    assert client.post("/api/v1/departments/", {"code": "a", "name": "b"}, format="json").status_code == 403


def test_api_key_shown_once_hashed_and_usable(api_as: Callable[[str], APIClient]) -> None:
    resp = api_as("bob").post("/api/v1/api-keys/", {"name": "cherry studio"}, format="json")
    assert resp.status_code == 201
    secret = resp.json()["key"]
    key = ApiKey.objects.get(pk=resp.json()["id"])
    assert secret.startswith(f"ak_{key.prefix}_") and secret not in key.hashed_key
    listed = api_as("bob").get(f"/api/v1/api-keys/{key.pk}/").json()
    assert "key" not in listed
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/users/me/").json()["username"] == "bob"
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert secret not in str(AuditRecord.objects.get(action="api_key.create").after)


def test_revoked_key_is_refused(bearer_for: Callable[[str], APIClient], api_as: Callable[[str], APIClient]) -> None:
    client = bearer_for("bob")
    assert client.get("/api/v1/users/me/").status_code == 200
    key = ApiKey.objects.get(name="bob-test")
    assert api_as("bob").post(f"/api/v1/api-keys/{key.pk}/revoke/").status_code == 200
    resp = client.get("/api/v1/users/me/")
    assert resp.status_code == 401
    assert api_as("bob").post(f"/api/v1/api-keys/{key.pk}/revoke/").status_code == 409


def test_member_cannot_revoke_others_key(bearer_for: Callable[[str], APIClient], api_as: Callable) -> None:
    bearer_for("charlie")
    key = ApiKey.objects.get(name="charlie-test")
    assert api_as("bob").post(f"/api/v1/api-keys/{key.pk}/revoke/").status_code == 404
    assert api_as("dave").post(f"/api/v1/api-keys/{key.pk}/revoke/").status_code == 200


def test_department_admin_keys_for_service_accounts_only(api_as: Callable, personas: dict, departments: dict) -> None:
    resp = api_as("alice").post(
        "/api/v1/users/",
        {"username": "svc-rag", "department": departments["eng"].pk, "is_service_account": True},
        format="json",
    )
    assert resp.status_code == 201
    svc_id = resp.json()["id"]
    assert api_as("alice").post("/api/v1/api-keys/", {"name": "rag", "user": svc_id}, format="json").status_code == 201
    resp = api_as("alice").post("/api/v1/api-keys/", {"name": "x", "user": personas["bob"].pk}, format="json")
    assert resp.status_code == 403
    resp = api_as("alice").post("/api/v1/api-keys/", {"name": "x", "user": personas["charlie"].pk}, format="json")
    assert resp.status_code == 400


def test_expired_key_is_refused(personas: dict) -> None:
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from appliance.accounts.services import create_api_key

    with transaction.atomic():
        key, secret = create_api_key(personas["bob"], name="short", expires_at=timezone.now() + timedelta(seconds=60))
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/users/me/").status_code == 401


@pytest.mark.parametrize(
    "endpoint", ["/api/v1/users/", "/api/v1/departments/", "/api/v1/api-keys/", "/api/v1/audit-log/"]
)
def test_list_query_count_is_constant(api_as: Callable, departments: dict, endpoint: str) -> None:
    from conftest import make_department, make_user

    client = api_as("root")

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(endpoint).status_code == 200
        return len(ctx.captured_queries)

    for i in range(16):
        if i == 1:
            first = count_queries()
        dept = make_department(f"d{i}", f"部门{i}")
        user = make_user(f"user{i}", "member", dept)
        client.post("/api/v1/api-keys/", {"name": f"k{i}", "user": user.pk}, format="json")
    assert count_queries() == first


def test_empty_department_can_be_deleted_and_its_history_stays(api_as: Callable[[str], APIClient]) -> None:
    client = api_as("root")
    dept_id = client.post("/api/v1/departments/", {"code": "tmp", "name": "临时组"}, format="json").json()["id"]
    assert client.delete(f"/api/v1/departments/{dept_id}/").status_code == 204
    assert AuditRecord.objects.filter(department_id=dept_id).count() == 2  # create and delete


def test_department_with_users_cannot_be_deleted(api_as: Callable[[str], APIClient], departments: dict) -> None:
    resp = api_as("root").delete(f"/api/v1/departments/{departments['eng_ml'].pk}/")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "department_in_use"

"""/api/v1/quotas/: who may set which quota, input errors, audit, and the scopes a request counts against."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from appliance.accounts.models import Department, User
from appliance.audit.models import AuditRecord
from appliance.core.api.errors import exception_handler
from appliance.quotas import limiter
from appliance.quotas.limiter import QuotaExceeded, QuotaUnavailable
from appliance.quotas.models import Quota
from appliance.quotas.services import scopes_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/quotas/"
Api = Callable[[str], APIClient]


@pytest.fixture
def quotas(departments: dict[str, Department], personas: dict[str, User]) -> dict[str, Quota]:
    return {
        "eng": Quota.objects.create(department=departments["eng"], tokens_per_day=100_000),
        "eng_ml": Quota.objects.create(department=departments["eng_ml"], concurrent_requests=4),
        "fin": Quota.objects.create(department=departments["fin"], requests_per_minute=60),
        "bob": Quota.objects.create(user=personas["bob"], tokens_per_day=20_000),
    }


def post(api: Api, who: str, body: dict[str, Any]) -> Any:
    return api(who).post(URL, body, format="json")


def test_platform_admin_sets_a_department_quota_and_it_is_audited(api_as: Api, departments: dict) -> None:
    resp = post(api_as, "root", {"department": departments["fin"].pk, "tokens_per_day": 5000, "concurrent_requests": 3})
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["department_name"] == "财务部" and body["tokens_per_month"] is None
    rec = AuditRecord.objects.get(action="quota.create")
    assert rec.after is not None and rec.after["tokens_per_day"] == 5000
    assert rec.actor_name == "root" and rec.department_id == departments["fin"].pk


def test_department_admin_sets_quotas_below_their_department(
    api_as: Api, departments: dict, personas: dict[str, User]
) -> None:
    assert post(api_as, "alice", {"department": departments["eng_ml"].pk, "tokens_per_day": 1}).status_code == 201
    assert post(api_as, "alice", {"user": personas["carol"].pk, "requests_per_minute": 10}).status_code == 201
    assert AuditRecord.objects.filter(action="quota.create", actor_name="alice").count() == 2


@pytest.mark.parametrize(
    ("who", "target", "status", "code"),
    [
        ("alice", ("department", "eng"), 403, "permission_denied"),  # her own department is set from above
        ("alice", ("user", "alice"), 403, "permission_denied"),
        ("alice", ("department", "fin"), 400, "invalid_department"),
        ("alice", ("user", "charlie"), 400, "invalid_user"),
        ("bob", ("department", "eng"), 403, "permission_denied"),
        ("bob", ("user", "bob"), 403, "permission_denied"),
        ("eve", ("department", "fin"), 403, "permission_denied"),
        ("dave", ("department", "eng_ml"), 400, "invalid_department"),
    ],
)
def test_quota_creation_denied(
    api_as: Api, departments: dict, personas: dict, who: str, target: tuple[str, str], status: int, code: str
) -> None:
    kind, name = target
    obj = departments[name] if kind == "department" else personas[name]
    resp = post(api_as, who, {kind: obj.pk, "tokens_per_day": 1})
    assert resp.status_code == status and resp.json()["error"]["code"] == code
    assert not Quota.objects.exists() and not AuditRecord.objects.filter(action="quota.create").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tokens_per_day": -1}, "tokens_per_day"),
        ({"requests_per_minute": "lots"}, "requests_per_minute"),
        ({"concurrent_requests": 2**40}, "concurrent_requests"),
        ({"max_tokens_per_request": 1.5}, "max_tokens_per_request"),
        ({"colour": "red"}, "colour"),
        ({"user": 1}, "department"),  # both department and user
    ],
)
def test_bad_quota_input_is_400_naming_the_field(
    api_as: Api, departments: dict, body: dict[str, Any], field: str
) -> None:
    resp = post(api_as, "root", {"department": departments["fin"].pk, **body})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid" and field in resp.json()["error"]["details"]


def test_neither_department_nor_user_is_400(api_as: Api) -> None:
    resp = post(api_as, "root", {"tokens_per_day": 5})
    assert resp.status_code == 400 and {"department", "user"} <= set(resp.json()["error"]["details"])


def test_second_quota_for_the_same_department_is_409(api_as: Api, quotas: dict, departments: dict) -> None:
    resp = post(api_as, "root", {"department": departments["eng"].pk})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "duplicate"


def test_update_and_delete_are_audited_with_before_and_after(api_as: Api, quotas: dict) -> None:
    pk = quotas["eng_ml"].pk
    resp = api_as("alice").patch(f"{URL}{pk}/", {"concurrent_requests": None, "tokens_per_day": 900}, format="json")
    assert resp.status_code == 200 and resp.json()["concurrent_requests"] is None
    rec = AuditRecord.objects.get(action="quota.update")
    assert rec.before is not None and rec.after is not None
    assert (rec.before["concurrent_requests"], rec.after["tokens_per_day"]) == (4, 900)
    assert api_as("alice").delete(f"{URL}{pk}/").status_code == 204
    assert AuditRecord.objects.filter(action="quota.delete").exists() and not Quota.objects.filter(pk=pk).exists()


def test_update_cannot_move_a_quota(api_as: Api, quotas: dict, departments: dict) -> None:
    resp = api_as("root").patch(f"{URL}{quotas['eng'].pk}/", {"department": departments["fin"].pk}, format="json")
    assert resp.status_code == 400 and "department" in resp.json()["error"]["details"]


@pytest.mark.parametrize(
    ("who", "quota", "status"),
    [
        ("alice", "eng", 403),  # visible to her, but set from above
        ("alice", "fin", 404),
        ("bob", "bob", 403),
        ("bob", "eng", 403),
        ("bob", "fin", 404),
        ("dave", "eng", 404),
        ("eve", "eng", 403),
    ],
)
def test_quota_change_denied(api_as: Api, quotas: dict, who: str, quota: str, status: int) -> None:
    pk = quotas[quota].pk
    assert api_as(who).patch(f"{URL}{pk}/", {"tokens_per_day": 1}, format="json").status_code == status
    assert api_as(who).delete(f"{URL}{pk}/").status_code == status
    assert Quota.objects.filter(pk=pk).exists()


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        ("root", {"eng", "eng_ml", "fin", "bob"}),
        ("eve", {"eng", "eng_ml", "fin", "bob"}),
        ("alice", {"eng", "eng_ml", "bob"}),
        ("dave", {"fin"}),
        ("bob", {"eng", "bob"}),
        ("carol", {"eng", "eng_ml"}),
        ("charlie", {"fin"}),
    ],
)
def test_who_sees_which_quotas(api_as: Api, quotas: dict, who: str, visible: set[str]) -> None:
    ids = {q["id"] for q in api_as(who).get(URL).json()["results"]}
    assert ids == {quotas[name].pk for name in visible}


def test_unauthenticated_is_401() -> None:
    assert APIClient().get(URL).status_code == 401


def test_quota_list_query_count_is_constant(api_as: Api, quotas: dict, personas: dict) -> None:
    client = api_as("root")
    with CaptureQueriesContext(connection) as few:
        client.get(URL)
    for name in ("alice", "carol", "charlie", "dave", "eve"):
        Quota.objects.create(user=personas[name], tokens_per_month=1)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(URL).json()["results"]) == 9
    assert len(many) == len(few)


def test_scopes_for_a_user_run_from_the_user_to_the_root(quotas: dict, personas: dict, departments: dict) -> None:
    scopes = scopes_for(User.objects.select_related("department").get(pk=personas["carol"].pk))
    assert [s.key for s in scopes] == [
        f"u:{personas['carol'].pk}",
        f"d:{departments['eng_ml'].pk}",
        f"d:{departments['eng'].pk}",
    ]
    assert (scopes[0].tokens_per_day, scopes[1].concurrent_requests, scopes[2].tokens_per_day) == (None, 4, 100_000)
    assert scopes[2].label == "研发部"


def test_a_departments_quotas_read_once_give_each_of_its_users_their_scopes(
    quotas: dict, personas: dict, departments: dict
) -> None:
    from appliance.quotas.services import department_quotas, scopes_in

    users = User.objects.select_related("department")
    bob, alice, carol = (users.get(pk=personas[name].pk) for name in ("bob", "alice", "carol"))
    assert bob.department_id == alice.department_id  # bob has a quota of his own, alice none
    read = department_quotas(bob.department)
    with CaptureQueriesContext(connection) as queries:
        assert scopes_in(bob, read) == scopes_for(bob)
        assert scopes_in(alice, read) == scopes_for(alice)
    assert len(queries.captured_queries) == 2  # scopes_for's own: scopes_in asked nothing
    assert scopes_in(bob, read)[0].tokens_per_day == 20_000 and scopes_in(alice, read)[0].tokens_per_day is None
    assert scopes_in(carol, read) == scopes_for(carol)  # another department: read for her


def test_mine_shows_the_limits_and_current_use(api_as: Api, quotas: dict, personas: dict) -> None:
    bob = User.objects.select_related("department").get(pk=personas["bob"].pk)
    scopes = scopes_for(bob)

    @async_to_sync
    async def used() -> None:
        await limiter.asettle(await limiter.areserve(scopes, "r1", 100, 100), 100, 50)
        await limiter.aclose()

    used()
    body = api_as("bob").get(f"{URL}mine/").json()
    assert body["available"] is True
    own, dept = body["scopes"]
    assert own["tokens_per_day"] == 20_000 and own["usage"]["tokens_today"] == 150
    assert dept["label"] == "研发部" and dept["usage"]["tokens_today"] == 150


def test_mine_without_redis_says_unavailable(api_as: Api, quotas: dict, redis_down: None) -> None:
    body = api_as("bob").get(f"{URL}mine/").json()
    assert body["available"] is False and body["scopes"][0]["usage"] is None


def test_error_handler_gives_429_and_503_with_retry_after() -> None:
    exc = QuotaExceeded("quota_exceeded", "tokens_per_day", 100, 90, 3600, "研发部")
    resp = exception_handler(exc, {})
    assert resp is not None and resp.status_code == 429 and resp["Retry-After"] == "3600"
    assert resp.data["error"]["code"] == "quota_exceeded"
    assert resp.data["error"]["details"]["limit_name"] == "tokens_per_day"
    resp = exception_handler(QuotaUnavailable("down"), {})
    assert resp is not None and resp.status_code == 503 and resp["Retry-After"] == "1"
    assert resp.data["error"]["code"] == "quota_unavailable"

"""/api/v1/usage/: visibility by persona, filters, summaries, CSV, constant query counts; the usage page."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from appliance.accounts.models import User
from appliance.quotas.models import Quota, UsageRecord

pytestmark = pytest.mark.django_db

URL = "/api/v1/usage/"
Api = Callable[[str], APIClient]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def make_usage(user: User, day: int, prompt: int = 10, completion: int = 20, **extra: Any) -> UsageRecord:
    # 07:30 in Shanghai is still the previous day in UTC: grouping must follow the local day.
    moment = datetime(2026, 3, day, 7, 30, tzinfo=SHANGHAI)
    return UsageRecord.objects.create(
        uid=uuid.uuid4().hex,
        request_id=f"r-{uuid.uuid4().hex[:8]}",
        user=user,
        department=user.department,
        model=extra.pop("model", "r1-7b"),
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_ms=extra.pop("latency_ms", 1000),
        ttft_ms=extra.pop("ttft_ms", 100),
        status=extra.pop("status", "ok"),
        created_at=moment,
        day=moment.date(),
        **extra,
    )


@pytest.fixture
def usage(personas: dict[str, User]) -> dict[str, list[UsageRecord]]:
    return {
        "bob": [make_usage(personas["bob"], 1), make_usage(personas["bob"], 2, model="r1-32b", deployment_id=5)],
        "carol": [make_usage(personas["carol"], 1, prompt=100, status="error")],
        "alice": [make_usage(personas["alice"], 2)],
        "charlie": [make_usage(personas["charlie"], 2, prompt=1000, status="rejected", completion=0)],
    }


def owners(resp: Any) -> set[str]:
    return {row["username"] for row in resp.json()["results"]}


@pytest.mark.parametrize(
    ("who", "seen"),
    [
        ("root", {"bob", "carol", "alice", "charlie"}),
        ("eve", {"bob", "carol", "alice", "charlie"}),
        ("alice", {"bob", "carol", "alice"}),
        ("dave", {"charlie"}),
        ("bob", {"bob"}),
        ("carol", {"carol"}),
        ("charlie", {"charlie"}),
    ],
)
def test_who_sees_which_usage(api_as: Api, usage: dict, who: str, seen: set[str]) -> None:
    assert owners(api_as(who).get(URL)) == seen


def test_others_records_are_404_and_usage_is_read_only(api_as: Api, usage: dict) -> None:
    assert api_as("bob").get(f"{URL}{usage['carol'][0].pk}/").status_code == 404
    assert api_as("bob").get(f"{URL}{usage['bob'][0].pk}/").status_code == 200
    assert api_as("root").post(URL, {}, format="json").status_code == 405
    assert api_as("root").delete(f"{URL}{usage['bob'][0].pk}/").status_code == 405


def test_unauthenticated_is_401_and_bearer_keys_work(bearer_for: Api, usage: dict) -> None:
    assert APIClient().get(URL).status_code == 401
    assert owners(bearer_for("bob").get(URL)) == {"bob"}


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"model": "r1-32b"}, 1),
        ({"deployment": 5}, 1),
        ({"status": "error"}, 1),
        ({"since": "2026-03-02"}, 3),
        ({"until": "2026-03-02"}, 2),
        ({"since": "2026-03-01T23:00:00Z"}, 3),
    ],
)
def test_filters(api_as: Api, usage: dict, params: dict[str, Any], count: int) -> None:
    assert api_as("root").get(URL, params).json()["count"] == count


def test_department_filter_includes_sub_departments(api_as: Api, usage: dict, departments: dict) -> None:
    assert owners(api_as("root").get(URL, {"department": departments["eng"].pk})) == {"bob", "carol", "alice"}
    assert owners(api_as("root").get(URL, {"department": departments["eng_ml"].pk})) == {"carol"}
    assert owners(api_as("alice").get(URL, {"department": departments["fin"].pk})) == set()


def test_user_filter_cannot_widen_what_a_member_sees(api_as: Api, usage: dict, personas: dict) -> None:
    assert api_as("bob").get(URL, {"user": personas["carol"].pk}).json()["count"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [({"since": "yesterday"}, "since"), ({"user": "bob"}, "user"), ({"status": "odd"}, "status")],
)
def test_bad_filters_are_400_naming_the_field(api_as: Api, params: dict[str, str], field: str) -> None:
    resp = api_as("root").get(URL, params)
    assert resp.status_code == 400 and field in resp.json()["error"]["details"]


def test_summary_by_day_uses_the_local_day(api_as: Api, usage: dict) -> None:
    rows = api_as("root").get(f"{URL}summary/", {"group_by": "day"}).json()["results"]
    assert [(r["key"], r["requests"]) for r in rows] == [("2026-03-01", 2), ("2026-03-02", 3)]
    first = rows[0]
    assert (first["prompt_tokens"], first["completion_tokens"], first["total_tokens"]) == (110, 40, 150)
    assert (first["failed"], rows[1]["rejected"], first["avg_latency_ms"]) == (1, 1, 1000)


def test_summary_by_user_and_department_is_restricted(api_as: Api, usage: dict, personas: dict) -> None:
    by_user = api_as("alice").get(f"{URL}summary/", {"group_by": "user"}).json()["results"]
    assert {r["name"]: r["total_tokens"] for r in by_user} == {"bob": 60, "carol": 120, "alice": 30}
    by_dept = api_as("root").get(f"{URL}summary/", {"group_by": "department"}).json()["results"]
    assert {r["name"]: r["requests"] for r in by_dept} == {"研发部": 3, "算法组": 1, "财务部": 1}
    mine = api_as("bob").get(f"{URL}summary/", {"group_by": "department"}).json()["results"]
    assert [(r["name"], r["requests"]) for r in mine] == [("研发部", 2)]


def test_bad_group_by_is_400(api_as: Api) -> None:
    resp = api_as("root").get(f"{URL}summary/", {"group_by": "deployment"})
    assert resp.status_code == 400 and "group_by" in resp.json()["error"]["details"]


def test_summary_by_model(api_as: Api, usage: dict) -> None:
    rows = api_as("alice").get(f"{URL}summary/", {"group_by": "model"}).json()["results"]
    assert {row["key"]: row["requests"] for row in rows} == {"r1-7b": 3, "r1-32b": 1}


def read_csv(resp: Any) -> list[dict[str, str]]:
    text = b"".join(resp.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_exports_are_restricted_and_filtered(api_as: Api, usage: dict) -> None:
    resp = api_as("alice").get(f"{URL}export/", {"since": "2026-03-02"})
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/csv")
    assert sorted(r["username"] for r in read_csv(resp)) == ["alice", "bob"]
    rows = read_csv(api_as("dave").get(f"{URL}summary/export/", {"group_by": "user"}))
    assert rows == [
        {
            "key": str(usage["charlie"][0].user_id),
            "name": "charlie",
            "requests": "1",
            "prompt_tokens": "1000",
            "completion_tokens": "0",
            "total_tokens": "1000",
            "failed": "0",
            "rejected": "1",
            "avg_latency_ms": "1000",
            "avg_ttft_ms": "100",
        }
    ]


@pytest.mark.parametrize("path", ["", "summary/?group_by=user", "summary/?group_by=department", "summary/"])
def test_usage_query_counts_are_constant(api_as: Api, personas: dict, path: str) -> None:
    client = api_as("alice")
    make_usage(personas["bob"], 3)
    with CaptureQueriesContext(connection) as few:
        assert client.get(f"{URL}{path}").status_code == 200
    for day in range(4, 12):
        for name in ("bob", "carol", "alice"):
            make_usage(personas[name], day)
    with CaptureQueriesContext(connection) as many:
        client.get(f"{URL}{path}")
    assert len(many) == len(few)


# --- the page ---------------------------------------------------------------------------------


def page(user: User, query: str = "", path: str = "/usage/") -> str:
    client = Client()
    client.force_login(user)
    resp = client.get(f"{path}{query}")
    assert resp.status_code == 200
    return resp.content.decode()


def test_usage_page_shows_table_chart_and_menu_entry(personas: dict, usage: dict) -> None:
    eng = personas["alice"].department_id
    body = page(personas["alice"], "?since=2026-03-01&until=2026-03-03", f"/usage/departments/{eng}/")
    assert 'data-testid="chart"' in body
    charts = json.loads(body.split('<script id="usage-charts" type="application/json">')[1].split("</script>")[0])
    assert len(charts["days"]) == 2 and charts["by_model"] and charts["users"]
    assert "2026-03-01" in body and f"/usage/departments/{eng}/export/?by=user" in body
    assert 'href="/usage/"' in body and 'href="/usage/departments/"' in body and "部门用量" in body


def test_usage_page_for_a_member_shows_own_usage_and_quotas(personas: dict, usage: dict, departments: dict) -> None:
    Quota.objects.create(department=departments["eng"], tokens_per_day=123_456)
    body = page(personas["bob"], "?since=2026-03-01&group_by=user")
    assert "123456" in body and "研发部" in body
    assert "bob" in body and "carol" not in body


def test_usage_page_reports_a_bad_filter(personas: dict) -> None:
    assert "since" in page(personas["root"], "?since=not-a-date")

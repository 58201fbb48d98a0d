from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from appliance.audit.models import AuditRecord

pytestmark = pytest.mark.django_db


def _seed(api_as: Callable[[str], APIClient], departments: dict) -> None:
    api_as("root").post("/api/v1/users/", {"username": "ml1", "department": departments["eng_ml"].pk}, format="json")
    api_as("root").post("/api/v1/users/", {"username": "fin1", "department": departments["fin"].pk}, format="json")
    api_as("root").post("/api/v1/departments/", {"code": "hr", "name": "人事部"}, format="json")


def test_filters(api_as: Callable[[str], APIClient], departments: dict) -> None:
    _seed(api_as, departments)
    client = api_as("root")
    assert client.get("/api/v1/audit-log/?action=user.").json()["count"] == 2
    assert client.get("/api/v1/audit-log/?action=department.create").json()["count"] == 1
    assert client.get(f"/api/v1/audit-log/?department={departments['fin'].pk}").json()["count"] == 1
    assert client.get("/api/v1/audit-log/?actor=root").json()["count"] == 3
    assert client.get("/api/v1/audit-log/?since=2999-01-01T00:00:00Z").json()["count"] == 0
    # Substrings: a word of the code finds every action with it; part of a name finds the actor.
    assert client.get("/api/v1/audit-log/?action=department").json()["count"] == 1
    assert client.get("/api/v1/audit-log/?action=create").json()["count"] == 3
    assert client.get("/api/v1/audit-log/?actor=ro").json()["count"] == 3
    assert client.get("/api/v1/audit-log/?actor=ROOT").json()["count"] == 3
    assert client.get("/api/v1/audit-log/?actor=alice").json()["count"] == 0
    bad = client.get("/api/v1/audit-log/?since=yesterday")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_datetime"


def test_department_admin_sees_own_subtree_only(api_as: Callable[[str], APIClient], departments: dict) -> None:
    _seed(api_as, departments)
    labels = {r["target_label"] for r in api_as("alice").get("/api/v1/audit-log/").json()["results"]}
    assert labels == {"ml1"}


def test_member_sees_nothing(api_as: Callable[[str], APIClient], departments: dict) -> None:
    _seed(api_as, departments)
    assert api_as("bob").get("/api/v1/audit-log/").json()["count"] == 0


def test_csv_export(api_as: Callable[[str], APIClient], departments: dict) -> None:
    _seed(api_as, departments)
    resp = api_as("eve").get("/api/v1/audit-log/export/?action=department.")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/csv")
    text = b"".join(resp.streaming_content).decode("utf-8-sig")  # type: ignore[attr-defined]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["action"] for r in rows] == ["department.create"]
    assert "人事部" in rows[0]["after"]


def test_audit_log_is_read_only_over_api(api_as: Callable[[str], APIClient], departments: dict) -> None:
    _seed(api_as, departments)
    client = api_as("root")
    first = client.get("/api/v1/audit-log/").json()["results"][0]["id"]
    assert client.delete(f"/api/v1/audit-log/{first}/").status_code == 405
    assert client.patch(f"/api/v1/audit-log/{first}/", {"action": "x"}, format="json").status_code == 405


def test_request_id_reaches_audit(api_as: Callable[[str], APIClient]) -> None:
    client = api_as("root")
    resp = client.post(
        "/api/v1/departments/",
        {"code": "ops", "name": "运维"},
        format="json",
        HTTP_X_REQUEST_ID="req-abcdef123456",
        REMOTE_ADDR="10.1.2.3",
        HTTP_USER_AGENT="pytest",
    )
    assert resp["X-Request-ID"] == "req-abcdef123456"
    rec = client.get("/api/v1/audit-log/?action=department.create").json()["results"][0]
    assert (rec["request_id"], rec["source_ip"], rec["user_agent"], rec["via"]) == (
        "req-abcdef123456",
        "10.1.2.3",
        "pytest",
        "api",
    )


@pytest.mark.parametrize("zone, offset", [("Asia/Shanghai", "+08:00"), ("UTC", "+00:00")])
def test_csv_times_are_in_the_console_time_zone_with_offset(
    api_as: Callable[[str], APIClient], departments: dict, settings: Any, zone: str, offset: str
) -> None:
    settings.TIME_ZONE = zone
    _seed(api_as, departments)
    resp = api_as("root").get("/api/v1/audit-log/export/?action=department.create")
    text = b"".join(resp.streaming_content).decode("utf-8-sig")  # type: ignore[attr-defined]
    row = next(csv.DictReader(io.StringIO(text)))
    moment = datetime.fromisoformat(row["created_at"])
    assert row["created_at"].endswith(offset)
    record = AuditRecord.objects.get(action="department.create")
    assert moment == record.created_at.replace(microsecond=0)  # the same instant, written in local time

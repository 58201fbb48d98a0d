"""Usage retention: raw rows rolled up hourly, hourly rows daily, and every report total unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from appliance.accounts.models import User
from appliance.quotas import reports
from appliance.quotas.choices import GroupBy, UsagePeriod
from appliance.quotas.drain import store_records
from appliance.quotas.models import UsageRecord
from appliance.quotas.retention import apply_retention, roll_up
from appliance.quotas.usage import RequestMeta, usage_record

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _records(personas: dict[str, User]) -> None:
    rows = []
    for n, (name, days_ago, status) in enumerate(
        [("bob", 500, "ok"), ("bob", 500, "error"), ("carol", 200, "ok"), ("bob", 120, "rejected"), ("carol", 5, "ok")]
        * 6
    ):
        user = personas[name]
        meta = RequestMeta(user_id=user.pk, department_id=user.department_id, model=f"m{n % 2}")
        moment = (NOW - timedelta(days=days_ago, minutes=7 * n)).timestamp()
        timed = status != "rejected"
        rows.append(
            usage_record(
                meta, f"r{n}", status=status, prompt_tokens=10 + n, completion_tokens=n if timed else 0,
                latency_ms=100 + n if timed else None, ttft_ms=20 + n if timed else None, now=moment,
            )
        )  # fmt: skip
    store_records(rows)


def _summaries() -> dict[str, Any]:
    qs = UsageRecord.objects.all()
    return {group: [reports.summary_row(r, group) for r in reports.summarize(qs, group)] for group in GroupBy.values}


def test_rolling_up_keeps_every_summary(personas: dict[str, User], settings: Any) -> None:
    _records(personas)
    before = _summaries()
    assert UsageRecord.objects.count() == 30

    hourly, daily = apply_retention(now=NOW)  # defaults: raw after 90 days, hourly after 400

    assert hourly.rows_in == 24 and daily.rows_in > 0
    assert UsageRecord.objects.filter(period=UsagePeriod.REQUEST).count() == 6  # the 5-day-old ones
    assert UsageRecord.objects.filter(period=UsagePeriod.DAY, created_at__lt=NOW - timedelta(days=400)).exists()
    assert not UsageRecord.objects.filter(period=UsagePeriod.HOUR, created_at__lt=NOW - timedelta(days=401)).exists()
    assert UsageRecord.objects.count() < 30
    assert _summaries() == before


def test_a_second_run_changes_nothing_and_late_rows_join_their_bucket(personas: dict[str, User]) -> None:
    _records(personas)
    roll_up(UsagePeriod.HOUR, 90, now=NOW)
    before = _summaries()
    assert roll_up(UsagePeriod.HOUR, 90, now=NOW).rows_in == 0
    # A record drained late for an hour already rolled up gets a roll-up row of its own.
    late = usage_record(
        RequestMeta(user_id=personas["bob"].pk, department_id=personas["bob"].department_id, model="m0"),
        "late", status="ok", prompt_tokens=7, now=(NOW - timedelta(days=500)).timestamp(),
    )  # fmt: skip
    store_records([late])
    assert roll_up(UsagePeriod.HOUR, 90, now=NOW).rows_in == 1
    after = {row["key"]: row for row in _summaries()[GroupBy.USER]}
    expected = {row["key"]: row for row in before[GroupBy.USER]}
    bob = personas["bob"].pk
    assert after[bob]["requests"] == expected[bob]["requests"] + 1
    assert after[bob]["prompt_tokens"] == expected[bob]["prompt_tokens"] + 7


def test_the_usage_api_summary_is_unchanged(personas: dict[str, User], api_as: Any) -> None:
    _records(personas)
    client = api_as("root")
    before = client.get("/api/v1/usage/summary/?group_by=department").json()
    apply_retention(now=NOW)
    assert client.get("/api/v1/usage/summary/?group_by=department").json() == before

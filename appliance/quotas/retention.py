"""Usage retention: raw rows rolled up into hourly rows, hourly rows into daily rows, totals unchanged.

A roll-up row is a ``UsageRecord`` with ``period`` set: its tokens and latencies are sums over its
``requests`` requests, and it keeps every dimension reports filter and group on (user, key,
department, deployment, model, status, refusal reason, local day), so summaries, quotas pages and CSV
summaries give the same totals before and after. The rows of one bucket are summed and deleted in one transaction:
a crash leaves either the raw rows or their roll-up, never both or neither.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from appliance.quotas.choices import UsagePeriod
from appliance.quotas.models import UsageRecord
from appliance.quotas.windows import local_zone

DIMENSIONS = ("user_id", "api_key_id", "department_id", "deployment_id", "model", "status", "reason", "day")
SUMS = ("requests", "prompt_tokens", "completion_tokens", "latency_ms", "latency_count", "ttft_ms", "ttft_count")
SOURCE: dict[str, str] = {UsagePeriod.HOUR: UsagePeriod.REQUEST, UsagePeriod.DAY: UsagePeriod.HOUR}


@dataclass(frozen=True)
class RollupResult:
    buckets: int
    rows_in: int
    rows_out: int


def _bucket(period: str, moment: datetime) -> tuple[datetime, datetime]:
    if period == UsagePeriod.HOUR:
        start = moment.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    local_day = moment.astimezone(local_zone()).date()
    start = datetime.combine(local_day, time.min, tzinfo=local_zone())
    return start, datetime.combine(local_day + timedelta(days=1), time.min, tzinfo=local_zone())


def _roll_bucket(period: str, start: datetime, end: datetime) -> tuple[int, int]:
    with transaction.atomic():
        source = UsageRecord.objects.filter(period=SOURCE[period], created_at__gte=start, created_at__lt=end)
        ids = list(source.select_for_update().values_list("pk", flat=True))
        groups = (
            UsageRecord.objects.filter(pk__in=ids)
            .order_by()
            .values(*DIMENSIONS)
            .annotate(**{f"sum_{name}": Sum(name) for name in SUMS})
        )
        rollups = [_rollup_row(period, start, group) for group in groups]
        UsageRecord.objects.bulk_create(rollups)
        UsageRecord.objects.filter(pk__in=ids).delete()
    return len(ids), len(rollups)


def _rollup_row(period: str, start: datetime, group: dict[str, object]) -> UsageRecord:
    sums = {name: int(group[f"sum_{name}"] or 0) for name in SUMS}  # type: ignore[call-overload]
    return UsageRecord(
        uid=f"{period[0]}{uuid.uuid4().hex[:31]}",
        period=period,
        created_at=start,
        **{name: group[name] for name in DIMENSIONS},
        **{**sums, "latency_ms": sums["latency_ms"] or None, "ttft_ms": sums["ttft_ms"] or None},
    )


def roll_up(period: str, older_than_days: int, *, now: datetime | None = None) -> RollupResult:
    """Roll up every whole bucket that ended more than ``older_than_days`` ago."""
    cutoff = (now or timezone.now()) - timedelta(days=older_than_days)
    buckets = rows_in = rows_out = 0
    while True:
        first = (
            UsageRecord.objects.filter(period=SOURCE[period], created_at__lt=cutoff)
            .order_by("created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if first is None:
            break
        start, end = _bucket(period, first)
        if end > cutoff:
            break
        taken, made = _roll_bucket(period, start, end)
        buckets, rows_in, rows_out = buckets + 1, rows_in + taken, rows_out + made
    return RollupResult(buckets, rows_in, rows_out)


def apply_retention(now: datetime | None = None) -> tuple[RollupResult, RollupResult]:
    """Beat task ``usage.retention``: raw rows to hours, then hours to days."""
    hourly = roll_up(UsagePeriod.HOUR, settings.APPLIANCE_USAGE_RAW_DAYS, now=now)
    daily = roll_up(UsagePeriod.DAY, settings.APPLIANCE_USAGE_HOURLY_DAYS, now=now)
    return hourly, daily

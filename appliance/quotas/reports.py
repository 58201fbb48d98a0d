"""Usage queries shared by the API, the CSV exports and the page: filters, summaries, rows."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime, time
from typing import Any

from django.db.models import Count, F, FloatField, Max, Q, QuerySet, Sum
from django.db.models.functions import Cast, Coalesce, NullIf
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _

from appliance.core.exceptions import InvalidInput
from appliance.quotas.choices import QUOTA_UNAVAILABLE_CODE, GroupBy, LimitName, UsageStatus
from appliance.quotas.models import UsageRecord
from appliance.quotas.windows import local_zone
from appliance.safety.choices import Stage

_ID_FILTERS = {"user": "user_id", "api_key": "api_key_id", "deployment": "deployment_id"}

RECORD_COLUMNS = [
    "created_at",
    "request_id",
    "username",
    "department",
    "api_key_id",
    "deployment_id",
    "model",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "ttft_ms",
]
SUMMARY_COLUMNS = [
    "key",
    "name",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "failed",
    "rejected",
    "avg_latency_ms",
    "avg_ttft_ms",
]


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", details={field: [message]})


def _int_param(params: Any, name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _invalid(name, "a whole number is required") from None


def parse_moment(params: Any, name: str) -> datetime | None:
    """An ISO date-time, or a date meaning its local midnight."""
    value = params.get(name)
    if value in (None, ""):
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise _invalid(name, "an ISO 8601 date or date-time is required")
        moment = datetime.combine(day, time.min)
    return timezone.make_aware(moment, local_zone()) if timezone.is_naive(moment) else moment


def filter_usage(qs: QuerySet[UsageRecord], params: Any) -> QuerySet[UsageRecord]:
    """``user``, ``department`` (with its sub-departments), ``api_key``, ``deployment``, ``model``,
    ``status``, ``since`` (inclusive) and ``until`` (exclusive)."""
    for param, lookup in _ID_FILTERS.items():
        value = _int_param(params, param)
        if value is not None:
            qs = qs.filter(**{lookup: value})
    department = _int_param(params, "department")
    if department is not None:
        qs = qs.filter(Q(department_id=department) | Q(department__path__contains=f"/{department}/"))
    if params.get("model"):
        qs = qs.filter(model=params["model"])
    status = params.get("status")
    if status:
        if status not in UsageStatus.values:
            raise _invalid("status", f"one of {', '.join(UsageStatus.values)}")
        qs = qs.filter(status=status)
    for param, lookup in (("since", "created_at__gte"), ("until", "created_at__lt")):
        moment = parse_moment(params, param)
        if moment is not None:
            qs = qs.filter(**{lookup: moment})
    return qs


_GROUPS = {
    GroupBy.DAY: ("day", "day"),
    GroupBy.USER: ("user_id", "user__username"),
    GroupBy.DEPARTMENT: ("department_id", "department__name"),
    GroupBy.MODEL: ("model", "model"),
}


def group_by_param(params: Any) -> str:
    value = params.get("group_by") or GroupBy.DAY
    if value not in GroupBy.values:
        raise _invalid("group_by", f"one of {', '.join(GroupBy.values)}")
    return str(value)


def _mean(total: str, count: str) -> Any:
    # Rolled-up rows carry sums and counts; a single request is a sum of one over a count of one.
    return Cast(Sum(total), FloatField()) / NullIf(Sum(count), 0)


def summarize(qs: QuerySet[UsageRecord], group_by: str) -> QuerySet[Any]:
    """One row per day, user or department: requests, tokens, errors, mean latency and TTFT.

    Rows rolled up by the retention job (``period`` hour or day) count as their ``requests``, so the
    totals are the same before and after raw rows are rolled up and pruned.
    """
    key, label = _GROUPS[GroupBy(group_by)]
    rows = qs.order_by().values(key, label) if key != label else qs.order_by().values(key)
    rows = rows.annotate(
        n_requests=Sum("requests"),
        prompt=Sum("prompt_tokens"),
        completion=Sum("completion_tokens"),
        total=Sum(F("prompt_tokens") + F("completion_tokens")),
        failed=Coalesce(Sum("requests", filter=Q(status=UsageStatus.ERROR)), 0),
        rejected=Coalesce(Sum("requests", filter=Q(status=UsageStatus.REJECTED)), 0),
        avg_latency=_mean("latency_ms", "latency_count"),
        avg_ttft=_mean("ttft_ms", "ttft_count"),
    )
    return rows.order_by(key)


def summary_row(row: dict[str, Any], group_by: str) -> dict[str, Any]:
    key, label = _GROUPS[GroupBy(group_by)]
    raw_key = row[key]
    return {
        "key": raw_key.isoformat() if group_by == GroupBy.DAY and raw_key is not None else raw_key,
        "name": str(row[label] if row[label] not in (None, "") else "—"),
        "requests": int(row["n_requests"] or 0),
        "prompt_tokens": int(row["prompt"] or 0),
        "completion_tokens": int(row["completion"] or 0),
        "total_tokens": int(row["total"] or 0),
        "failed": int(row["failed"] or 0),
        "rejected": int(row["rejected"] or 0),
        "avg_latency_ms": round(row["avg_latency"]) if row["avg_latency"] is not None else None,
        "avg_ttft_ms": round(row["avg_ttft"]) if row["avg_ttft"] is not None else None,
    }


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(header)  # BOM: Excel opens UTF-8 Chinese text correctly
    for row in rows:
        yield writer.writerow(row)


def record_rows(qs: QuerySet[UsageRecord]) -> Iterator[list[Any]]:
    zone = local_zone()
    for rec in qs.select_related("user", "department").iterator(chunk_size=2000):
        yield [
            rec.created_at.astimezone(zone).isoformat(),
            rec.request_id,
            rec.user.username if rec.user else "",
            rec.department.name if rec.department else "",
            rec.api_key_id,
            rec.deployment_id,
            rec.model,
            rec.status,
            rec.prompt_tokens,
            rec.completion_tokens,
            rec.latency_ms,
            rec.ttft_ms,
        ]


def summary_rows(qs: QuerySet[UsageRecord], group_by: str) -> Iterator[list[Any]]:
    for row in summarize(qs, group_by):
        data = summary_row(row, group_by)
        yield [data[col] for col in SUMMARY_COLUMNS]


def refusal_label(reason: str) -> str:
    """Why a request was refused, in the reader's language; ``reason`` as ``UsageRecord.reason`` stores it."""
    if reason in LimitName.values:
        return _("Quota exceeded: %(limit)s") % {"limit": LimitName(reason).label}
    if reason == QUOTA_UNAVAILABLE_CODE:
        return _("Quota accounting unavailable")
    return _("Quota (reason not recorded)")


def refusals(qs: QuerySet[UsageRecord], blocked: QuerySet[Any]) -> list[dict[str, Any]]:
    """Refused requests by reason: quota rejections from the usage records, content-safety blocks from the
    hits (``blocked``, one request counted once however many words it matched), most frequent first."""
    rows = [
        {"reason": r["reason"] or "", "label": refusal_label(r["reason"]), "count": int(r["n"]), "last": r["last"]}
        for r in qs.filter(status=UsageStatus.REJECTED)
        .order_by()
        .values("reason")
        .annotate(n=Sum("requests"), last=Max("created_at"))
    ]
    for hit in (
        blocked.order_by().values("stage").annotate(n=Count("request_id", distinct=True), last=Max("created_at"))
    ):
        label = _("Content blocked (%(stage)s)") % {"stage": Stage(hit["stage"]).label}
        rows.append(
            {"reason": f"content_blocked:{hit['stage']}", "label": label, "count": hit["n"], "last": hit["last"]}
        )
    return sorted(rows, key=lambda row: -row["count"])

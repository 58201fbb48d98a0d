"""The usage page: per day, user or department, with a daily token chart and the caller's quotas."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils import timezone

from appliance.accounts.models import acting_user
from appliance.core.exceptions import ServiceError
from appliance.core.querysets import VIEW
from appliance.quotas import reports
from appliance.quotas.choices import GroupBy, LimitName
from appliance.quotas.models import UsageRecord
from appliance.quotas.services import remaining_for
from appliance.quotas.windows import local_zone

CHART_WIDTH, CHART_HEIGHT, CHART_DAYS = 720, 160, 31
SUMMARY_ROWS = 200


def chart_bars(day_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bars (SVG coordinates) for total tokens per day; the tallest bar fills the chart."""
    rows = day_rows[-CHART_DAYS:]
    if not rows:
        return []
    peak = max(row["total_tokens"] for row in rows) or 1
    slot = CHART_WIDTH / len(rows)
    bars = []
    for index, row in enumerate(rows):
        height = round(row["total_tokens"] / peak * (CHART_HEIGHT - 20))
        bars.append(
            {
                "x": round(index * slot + slot * 0.1, 1),
                "y": CHART_HEIGHT - height,
                "width": round(slot * 0.8, 1),
                "height": height,
                "day": row["key"],
                "tokens": row["total_tokens"],
            }
        )
    return bars


_USED_BY_LIMIT = {
    LimitName.TOKENS_PER_DAY: "tokens_today",
    LimitName.TOKENS_PER_MONTH: "tokens_this_month",
    LimitName.REQUESTS_PER_MINUTE: "requests_this_minute",
    LimitName.CONCURRENT_REQUESTS: "requests_in_flight",
}


def quota_rows(remaining: dict[str, Any]) -> list[dict[str, Any]]:
    """The limits that apply to the caller, with what is used of each (None if Redis is unreachable)."""
    rows = []
    for scope in remaining["scopes"]:
        usage = scope["usage"] or {}
        for name, label in LimitName.choices:
            if scope[name] is None:
                continue
            used_key = _USED_BY_LIMIT.get(LimitName(name))
            used = usage.get(used_key) if used_key else None
            rows.append({"scope": scope["label"] or scope["key"], "limit": label, "value": scope[name], "used": used})
    return rows


def _params(request: HttpRequest) -> QueryDict:
    params = request.GET.copy()
    if not params.get("since"):
        start = timezone.now().astimezone(local_zone()).date() - timedelta(days=CHART_DAYS - 1)
        params["since"] = start.isoformat()
    return params


@login_required
def usage(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    params = _params(request)
    qs: QuerySet[UsageRecord] = UsageRecord.objects.restrict(user, VIEW)
    group_by = str(GroupBy.DAY)
    try:
        group_by = reports.group_by_param(params)
        qs = reports.filter_usage(qs, params)
    except ServiceError as exc:
        messages.error(request, exc.message)
        qs = qs.none()
    rows = [reports.summary_row(r, group_by) for r in reports.summarize(qs, group_by)[:SUMMARY_ROWS]]
    daily = (
        rows
        if group_by == GroupBy.DAY
        else [reports.summary_row(r, GroupBy.DAY) for r in reports.summarize(qs, GroupBy.DAY)]
    )
    params.pop("page", None)
    context = {
        "rows": rows,
        "group_by": group_by,
        "group_choices": GroupBy.choices,
        "since": params.get("since", ""),
        "bars": chart_bars(daily),
        "chart": {"width": CHART_WIDTH, "height": CHART_HEIGHT},
        "query": params.urlencode(),
        "quotas": quota_rows(remaining_for(user)),
    }
    return render(request, "console/usage.html", context)

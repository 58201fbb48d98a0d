"""The usage page: per day, user or department, with a daily token chart and the caller's quotas."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import F, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from appliance.accounts.models import acting_user
from appliance.core.exceptions import ServiceError
from appliance.core.querysets import VIEW
from appliance.quotas import reports
from appliance.quotas.choices import GroupBy, LimitName
from appliance.quotas.models import UsageRecord
from appliance.quotas.services import remaining_for
from appliance.quotas.windows import local_zone

CHART_DAYS, TOP_USERS = 31, 10
SUMMARY_ROWS = 200


def chart_data(qs: QuerySet[UsageRecord]) -> dict[str, Any]:
    """Tokens per day stacked by model, and prompt/completion tokens of the top users, for ECharts."""
    per_day = (
        qs.order_by()
        .values("day", "model")
        .annotate(tokens=Sum(F("prompt_tokens") + F("completion_tokens")))
        .order_by("day")
    )
    days = sorted({row["day"].isoformat() for row in per_day})[-CHART_DAYS:]
    models: dict[str, list[int]] = {}
    for row in per_day:
        day = row["day"].isoformat()
        if day in days:
            models.setdefault(row["model"] or "—", [0] * len(days))[days.index(day)] += int(row["tokens"] or 0)
    users = (
        qs.order_by()
        .values("user__username")
        .annotate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
        .order_by("-prompt")[:TOP_USERS]
    )
    names = [row["user__username"] or "—" for row in users]
    return {
        "days": days,
        "by_model": [{"name": name, "data": data} for name, data in sorted(models.items())],
        "users": names,
        "by_user": [
            {"name": str(_("Prompt tokens")), "data": [int(row["prompt"] or 0) for row in users]},
            {"name": str(_("Completion tokens")), "data": [int(row["completion"] or 0) for row in users]},
        ],
    }


def chart_labels() -> dict[str, str]:
    return {
        "tokens_model": _("Tokens per day by model"),
        "tokens_user": _("Tokens by user"),
        "day": _("Day"),
        "user": _("User"),
        "tokens": _("Tokens"),
        "no_data": _("No usage in this period."),
    }


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
    params.pop("page", None)
    context = {
        "rows": rows,
        "group_by": group_by,
        "group_choices": GroupBy.choices,
        "since": params.get("since", ""),
        "charts": chart_data(qs),
        "chart_labels": chart_labels(),
        "query": params.urlencode(),
        "quotas": quota_rows(remaining_for(user)),
    }
    return render(request, "console/usage.html", context)

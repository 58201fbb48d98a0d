"""A user's own usage page: tokens per day and per model, the quotas that apply and what is left of each
window, and the requests refused and why. Shared with the department page: the charts and the filters."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
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
from appliance.quotas.choices import USER_SCOPE_PREFIX, GroupBy, LimitName
from appliance.quotas.models import UsageRecord
from appliance.quotas.permissions import own_blocked_hits
from appliance.quotas.services import remaining_for
from appliance.quotas.windows import local_zone, windows_at

CHART_DAYS, TOP_USERS = 31, 10
SUMMARY_ROWS = 200
# The page's filters: a date range and a model (the API takes more).
PAGE_FILTERS = ("since", "until", "model")


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


def _resets() -> dict[str, datetime]:
    """When each window of a limit with one ends (local time)."""
    now = time.time()
    win = windows_at(now)
    at = {
        LimitName.TOKENS_PER_DAY: win.seconds_to_day,
        LimitName.TOKENS_PER_MONTH: win.seconds_to_month,
        LimitName.REQUESTS_PER_MINUTE: win.seconds_to_minute,
    }
    return {str(name): datetime.fromtimestamp(now + secs, tz=local_zone()) for name, secs in at.items()}


def _scope_name(scope: dict[str, Any]) -> str:
    if scope["key"].startswith(f"{USER_SCOPE_PREFIX}:"):
        return _("You (%(name)s)") % {"name": scope["label"]}
    return _("Department: %(name)s") % {"name": scope["label"] or scope["key"]}


def quota_rows(remaining: dict[str, Any]) -> list[dict[str, Any]]:
    """The limits that apply to the caller: used, allowed, left and when the window resets (used and left
    are None if Redis is unreachable, or for a limit without a running count)."""
    rows, resets = [], _resets()
    for scope in remaining["scopes"]:
        usage = scope["usage"] or {}
        for name, label in LimitName.choices:
            if scope[name] is None:
                continue
            used_key = _USED_BY_LIMIT.get(LimitName(name))
            used = usage.get(used_key) if used_key else None
            left = max(0, scope[name] - used) if used is not None else None
            row = {"scope": _scope_name(scope), "limit": label, "value": scope[name], "used": used}
            rows.append({**row, "left": left, "resets": resets.get(name)})
    return rows


def page_params(request: HttpRequest) -> QueryDict:
    """The page's filters, ``since`` defaulting to the start of the charts' window."""
    params = QueryDict(mutable=True)
    for name in PAGE_FILTERS:
        if request.GET.get(name):
            params[name] = request.GET[name]
    if not params.get("since"):
        start = timezone.now().astimezone(local_zone()).date() - timedelta(days=CHART_DAYS - 1)
        params["since"] = start.isoformat()
    return params


def filtered(request: HttpRequest, qs: QuerySet[UsageRecord], params: QueryDict) -> QuerySet[UsageRecord]:
    """``qs`` narrowed by the page's filters; a filter that does not parse is shown as an error."""
    try:
        return reports.filter_usage(qs, params)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return qs.none()


def summary(qs: QuerySet[UsageRecord], group_by: str) -> list[dict[str, Any]]:
    return [reports.summary_row(r, group_by) for r in reports.summarize(qs, group_by)[:SUMMARY_ROWS]]


def _blocked(user: Any, params: QueryDict) -> QuerySet[Any]:
    hits = own_blocked_hits(user)
    since, until = reports.parse_moment(params, "since"), reports.parse_moment(params, "until")
    hits = hits.filter(created_at__gte=since) if since else hits
    hits = hits.filter(created_at__lt=until) if until else hits
    return hits.filter(model=params["model"]) if params.get("model") else hits


@login_required
def usage(request: HttpRequest) -> HttpResponse:
    """Everyone's own usage, whatever their role: the department page is where admins see others'."""
    user = acting_user(request)
    params = page_params(request)
    qs = filtered(request, UsageRecord.objects.restrict(user, VIEW).filter(user=user), params)
    try:
        blocked = _blocked(user, params)
    except ServiceError:  # already shown by ``filtered``
        blocked = own_blocked_hits(user).none()
    context = {
        "since": params.get("since", ""),
        "until": params.get("until", ""),
        "model": params.get("model", ""),
        "by_model": summary(qs, GroupBy.MODEL),
        "refusals": reports.refusals(qs, blocked),
        "charts": chart_data(qs),
        "chart_labels": chart_labels(),
        "quotas": quota_rows(remaining_for(user)),
    }
    return render(request, "console/usage.html", context)

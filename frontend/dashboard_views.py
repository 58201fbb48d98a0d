"""The console's home for platform and department admins (and auditors): live charts and recent events."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from appliance.accounts.models import ApiKey, Department, User, acting_user
from appliance.core.querysets import VIEW
from appliance.monitoring import dashboard
from appliance.monitoring.permissions import may_see_dashboard


def chart_labels() -> dict[str, str]:
    """Titles, axis names and units for the charts, translated here so the script holds no text."""
    return {
        "gpu_util": _("GPU utilisation"),
        "gpu_memory": _("GPU memory used"),
        "time": _("Time"),
        "percent": _("Utilisation (%)"),
        "gib": _("Memory (GiB)"),
        "tokens_department": _("Tokens per day by department"),
        "tokens_model": _("Tokens per day by model"),
        "day": _("Day"),
        "tokens": _("Tokens"),
        "no_data": _("No data yet"),
    }


def dashboard_page(request: HttpRequest, user: User) -> HttpResponse:
    context: dict[str, Any] = {
        "department_count": Department.objects.restrict(user, VIEW).count(),
        "user_count": User.objects.restrict(user, VIEW).count(),
        "key_count": ApiKey.objects.restrict(user, VIEW).usable().count(),
        "deployments": dashboard.deployments(user),
        "active_chats": dashboard.active_chats(user),
        "failures": dashboard.recent_failures(user),
        "audit": dashboard.recent_audit(user),
        "labels": chart_labels(),
    }
    return render(request, "console/home.html", context)


@login_required
def dashboard_data(request: HttpRequest) -> JsonResponse:
    user = acting_user(request)
    if not may_see_dashboard(user):
        raise PermissionDenied
    return JsonResponse(dashboard.charts(user))

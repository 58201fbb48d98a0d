"""Nodes and GPU pages: the live grid, GPU detail with history charts, assignment, quotas, maintenance.

The grid is rendered once and then refreshed every few seconds from ``gpu_live`` (JSON) by
``static/console/gpu-grid.js``; both use :func:`tile`, so a tile reads the same either way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from appliance.accounts.models import Department, User, acting_user
from appliance.core.exceptions import ServiceError
from appliance.core.querysets import VIEW
from appliance.gpus import metrics, services
from appliance.gpus.choices import GIB, PresenceState, UnitFlag, UnitKind
from appliance.gpus.models import Gpu, GpuUnit, Node
from appliance.gpus.nodes import is_fresh
from appliance.gpus.permissions import may_manage_gpus
from frontend.forms import set_choices
from frontend.gpu_forms import AssignForm, MaintenanceForm, QuotaForm

REFRESH_MS = 3000
FREE_COLOR = "#eceff1"
CHART_WIDTH, CHART_HEIGHT = 600, 120
# Range shown on the detail page -> (span, seconds per point).
RANGES = {
    "1h": (timedelta(hours=1), 10),
    "24h": (timedelta(hours=24), 300),
    "7d": (timedelta(days=7), 3600),
    "30d": (timedelta(days=30), 3 * 3600),
}


def pool_color(department_id: int | None) -> str:
    """A stable pastel per department (golden-angle hues keep neighbours apart); grey when free."""
    if department_id is None:
        return FREE_COLOR
    return f"hsl({department_id * 137.508 % 360:.0f} 65% 82%)"


def _dash(value: Any, suffix: str = "") -> str:
    return "—" if value is None else f"{value}{suffix}"


def visible_units(user: User) -> QuerySet[GpuUnit]:
    """Units to show: present ones, and missing ones that still matter (in a pool or flagged)."""
    matter = Q(state=PresenceState.PRESENT) | Q(department__isnull=False) | ~Q(flag=UnitFlag.NONE)
    return GpuUnit.objects.restrict(user, VIEW).filter(matter).select_related("gpu__node", "department", "claim")


def tile(unit: GpuUnit) -> dict[str, Any]:
    gpu = unit.gpu
    label = f"GPU {gpu.index}" + (f" · {unit.profile}" if unit.kind == UnitKind.MIG else "")
    claim = getattr(unit, "claim", None)
    memory = f"{services.gib(unit.memory_used)} / {services.gib(unit.memory_total)} GiB"
    return {
        "id": unit.pk,
        "gpu": gpu.pk,
        "node": gpu.node.name,
        "label": label,
        "name": gpu.name,
        "state": unit.state,
        "simulated": unit.simulated,
        "department": unit.department_id,
        "color": pool_color(unit.department_id),
        "held_by": claim.deployment_id if claim is not None else None,
        "text": {
            "department": unit.department.name if unit.department else _("Free"),
            "memory": memory,
            "util": _dash(gpu.util_gpu, "%"),
            "temperature": _dash(gpu.temperature_c, " °C"),
            "state": unit.get_state_display(),
            "flag": unit.get_flag_display() if unit.flag else "",
        },
    }


def _summary(user: User) -> dict[str, Any]:
    summary = services.pool_summary(user)
    for pool in summary["pools"]:
        pool["color"] = pool_color(pool["department"])
    return summary


def _department_choices() -> list[tuple[str | int, str]]:
    return [("", "—"), *Department.objects.values_list("pk", "name")]


@login_required
def gpu_grid(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    form = AssignForm()
    set_choices(form, "department_id", _department_choices() if may_manage_gpus(user) else [])
    tiles = [tile(unit) for unit in visible_units(user)]
    context = {
        "tiles": tiles,
        "summary": _summary(user),
        "form": form,
        # Nothing to tick, nothing to assign: the page explains instead why there are no tiles.
        "can_assign": may_manage_gpus(user) and bool(tiles),
        "refresh_ms": REFRESH_MS,
        "not_assigned": not tiles and GpuUnit.objects.filter(state=PresenceState.PRESENT).exists(),
        "gpu_less_nodes": [] if tiles else Node.objects.restrict(user, VIEW).filter(gpus__isnull=True),
    }
    return render(request, "gpus/grid.html", context)


@login_required
def gpu_live(request: HttpRequest) -> JsonResponse:
    """What the grid polls: every visible tile and the free/total summary."""
    user = acting_user(request)
    return JsonResponse({"units": [tile(unit) for unit in visible_units(user)], "summary": services.pool_summary(user)})


def _run_assignment(user: User, data: dict[str, Any]) -> str:
    units, force = data["units"], data.get("force", False)
    if data["action"] == "release":
        done = services.release_units(user, units, force=force)
    elif data["action"] == "move":
        done = services.move_units(user, units, data["department_id"], force=force)
    else:
        done = services.assign_units(user, units, data["department_id"])
    return _("%(count)d GPU units updated.") % {"count": len(done)}


@login_required
@require_POST
def gpu_assign(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    form = AssignForm(request.POST)
    set_choices(form, "department_id", _department_choices())
    set_choices(
        form, "units", [(pk, str(pk)) for pk in GpuUnit.objects.restrict(user, VIEW).values_list("pk", flat=True)]
    )
    if not form.is_valid():
        errors = [str(error) for field_errors in form.errors.values() for error in field_errors]
        messages.error(request, " ".join(errors))
        return redirect("gpus")
    try:
        messages.success(request, _run_assignment(user, form.cleaned_data))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("gpus")


def _chart(points: list[dict[str, Any]], since: datetime, until: datetime, spec: dict[str, Any]) -> dict[str, Any]:
    """An SVG polyline of one reading over [since, until]; the y axis runs from 0 to ``spec['top']`` or the peak."""
    scale, span = spec.get("scale", 1), (until - since).total_seconds()
    values = [
        (datetime.fromisoformat(p["at"]), p[spec["field"]] / scale) for p in points if p[spec["field"]] is not None
    ]
    top = max([spec.get("top") or 0, *(value for _at, value in values)]) or 1
    coords = [
        f"{(at - since).total_seconds() / span * CHART_WIDTH:.1f},{CHART_HEIGHT - value / top * CHART_HEIGHT:.1f}"
        for at, value in values
    ]
    last = f"{values[-1][1]:.1f}" if values else "—"
    return {**spec, "points": " ".join(coords), "top": f"{top:g}", "last": last, "empty": not values}


def _charts(gpu: Gpu, since: datetime, until: datetime, step: int) -> tuple[str, list[dict[str, Any]]]:
    history = metrics.history(gpu.pk, since, until, step)
    specs: list[dict[str, Any]] = [
        {"field": "util_gpu", "title": _("GPU utilisation"), "unit": "%", "top": 100},
        {
            "field": "memory_used",
            "title": _("Memory used"),
            "unit": "GiB",
            "scale": GIB,
            "top": (gpu.memory_total or 0) / GIB,
        },
        {"field": "temperature_c", "title": _("Temperature"), "unit": "°C", "top": 100},
        {"field": "power_draw_w", "title": _("Power draw"), "unit": "W", "top": gpu.power_limit_w},
    ]
    return history.resolution, [_chart(history.points, since, until, spec) for spec in specs]


@login_required
def gpu_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user = acting_user(request)
    gpu = Gpu.objects.restrict(user, VIEW).select_related("node").filter(pk=pk).first()
    if gpu is None:
        raise Http404
    range_key = request.GET.get("range", "1h") if request.GET.get("range") in RANGES else "1h"
    span, step = RANGES[range_key]
    until = timezone.now()
    resolution, charts = _charts(gpu, until - span, until, step)
    context = {
        "gpu": gpu,
        "units": [tile(unit) for unit in visible_units(user).filter(gpu=gpu)],
        "charts": charts,
        "resolution": resolution,
        "range": range_key,
        "ranges": list(RANGES),
        "chart": {"width": CHART_WIDTH, "height": CHART_HEIGHT},
    }
    return render(request, "gpus/detail.html", context)


@login_required
def nodes(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    rows = Node.objects.restrict(user, VIEW).annotate(gpu_count=Count("gpus")).order_by("name")
    now = timezone.now()
    context = {
        "rows": [{"node": node, "fresh": is_fresh(node, now)} for node in rows],
        "can_change": may_manage_gpus(user),
        "form": MaintenanceForm(),
    }
    return render(request, "gpus/nodes.html", context)


@login_required
@require_POST
def node_maintenance(request: HttpRequest, pk: int) -> HttpResponse:
    form = MaintenanceForm(request.POST)
    if form.is_valid():
        try:
            node = services.set_maintenance(acting_user(request), pk, **form.cleaned_data)
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request, _("Node %(name)s is now %(state)s.") % {"name": node.name, "state": node.get_state_display()}
            )
    return redirect("nodes")


@login_required
def gpu_quotas(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    form = QuotaForm(request.POST or None)
    set_choices(form, "department_id", _department_choices()[1:])
    if request.method == "POST" and form.is_valid():
        try:
            services.set_quota(user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("GPU quota saved."))
            return redirect("gpu-quotas")
    context = {"form": form, "summary": _summary(user), "can_change": may_manage_gpus(user)}
    return render(request, "gpus/quotas.html", context)

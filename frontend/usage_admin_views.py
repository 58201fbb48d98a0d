"""The department usage page: per user and per model over a date range, CSV export, and the form that sets
the token and request quotas of the department, the departments below it and their users.

Who may see which department and set which quota is decided in ``appliance/quotas/permissions.py`` and by
the gate (``restrict``); the quota itself is set by the same services as ``POST /api/v1/quotas/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from appliance.accounts.models import Department, User, acting_user
from appliance.core.exceptions import ServiceError
from appliance.core.querysets import VIEW
from appliance.quotas import reports, services
from appliance.quotas.api.serializers import MAX_BIGINT, MAX_INT
from appliance.quotas.choices import DEPARTMENT_SCOPE_PREFIX, USER_SCOPE_PREFIX, GroupBy, LimitName
from appliance.quotas.models import LIMIT_FIELDS, Quota, UsageRecord
from appliance.quotas.permissions import (
    may_manage_department,
    may_manage_user,
    may_set_quotas_in,
    may_view_department_usage,
    may_view_every_department_usage,
)
from appliance.safety.choices import Action
from appliance.safety.models import SafetyHit
from frontend.usage_views import chart_data, chart_labels, filtered, page_params, summary

EXPORT_GROUPS = (GroupBy.USER, GroupBy.MODEL, GroupBy.DAY)
_BIG_LIMITS = (LimitName.TOKENS_PER_DAY, LimitName.TOKENS_PER_MONTH)


class QuotaForm(forms.Form):
    """One quota's five limits; an empty field is unlimited. The ranges are the API's (MySQL's unsigned
    INT and BIGINT); the service checks the rest, as it does for the API."""

    target = forms.ChoiceField(label=gettext_lazy("Quota for"))

    def __init__(self, *args: Any, targets: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = targets  # type: ignore[attr-defined]
        for name, label in LimitName.choices:
            maximum = MAX_BIGINT if name in _BIG_LIMITS else MAX_INT
            self.fields[name] = forms.IntegerField(label=label, required=False, min_value=0, max_value=maximum)
            self.fields[name].widget.attrs["placeholder"] = _("unlimited")


def _department(request: HttpRequest, pk: int) -> tuple[User, Department]:
    """The department of the page: hidden (404) outside the user's view, refused (403) to members."""
    user = acting_user(request)
    department = Department.objects.restrict(user, VIEW).filter(pk=pk).first()
    if department is None:
        raise Http404(_("Department not found."))
    if not may_view_department_usage(user, department):
        raise PermissionDenied(_("Only administrators see the usage of a department."))
    return user, department


def _subtree(department: Department) -> Q:
    return Q(department_id=department.pk) | Q(department__path__startswith=department.path)


def _targets(user: User, department: Department) -> list[tuple[str, str]]:
    """What the user may set a quota for on this page: the department and those below it, and their users."""
    if not may_set_quotas_in(user, department):
        return []
    departments = Department.objects.filter(path__startswith=department.path).order_by("path")
    members = User.objects.filter(department__path__startswith=department.path, is_active=True)
    targets = [
        (f"{DEPARTMENT_SCOPE_PREFIX}:{d.pk}", _("Department: %(name)s") % {"name": d.name})
        for d in departments
        if may_manage_department(user, d)
    ]
    members = members.select_related("department").order_by("username")
    targets += [
        (f"{USER_SCOPE_PREFIX}:{u.pk}", _("User: %(name)s") % {"name": u.get_username()})
        for u in members
        if may_manage_user(user, u)
    ]
    return targets


def _quotas(user: User, department: Department) -> list[dict[str, Any]]:
    subtree = Q(department__path__startswith=department.path) | Q(user__department__path__startswith=department.path)
    rows = Quota.objects.restrict(user, VIEW).filter(subtree).select_related("department", "user")
    return [
        {
            "target": q.scope_key,
            "name": q.department.name if q.department is not None else q.user.get_username(),  # type: ignore[union-attr]
            "is_department": q.department_id is not None,
            "limits": [getattr(q, name) for name in LIMIT_FIELDS],
        }
        for q in rows
    ]


def _initial(target: str) -> dict[str, Any]:
    kind, _sep, raw = target.partition(":")
    field = "department_id" if kind == DEPARTMENT_SCOPE_PREFIX else "user_id"
    quota = Quota.objects.filter(**{field: int(raw)}).first() if raw.isdigit() else None
    return {"target": target, **(quota.limits() if quota is not None else {})}


def _blocked(user: User, department: Department, params: Any) -> QuerySet[SafetyHit]:
    hits = SafetyHit.objects.restrict(user, VIEW).filter(_subtree(department), action=Action.BLOCK)
    since, until = reports.parse_moment(params, "since"), reports.parse_moment(params, "until")
    hits = hits.filter(created_at__gte=since) if since else hits
    hits = hits.filter(created_at__lt=until) if until else hits
    return hits.filter(model=params["model"]) if params.get("model") else hits


def _usage(request: HttpRequest, user: User, department: Department) -> tuple[QuerySet[UsageRecord], Any]:
    params = page_params(request)
    params["department"] = str(department.pk)
    return filtered(request, UsageRecord.objects.restrict(user, VIEW), params), params


@login_required
def department_usage_index(request: HttpRequest) -> HttpResponse:
    """The department picker's target; department admins land on their own department."""
    user = acting_user(request)
    visible = Department.objects.restrict(user, VIEW).order_by("path")
    wanted = request.GET.get("department", "")
    chosen = visible.filter(pk=int(wanted)).first() if wanted.isdigit() else None
    chosen = chosen or (user.department if user.is_department_admin else visible.first())
    if chosen is None or not may_view_department_usage(user, chosen):
        if not may_view_every_department_usage(user):
            raise PermissionDenied(_("Only administrators see the usage of a department."))
        return render(request, "console/usage_department.html", {"department": None})
    query = request.GET.copy()
    query.pop("department", None)
    url = reverse("usage-department", args=[chosen.pk])
    return redirect(f"{url}?{query.urlencode()}" if query else url)


@login_required
def department_usage(request: HttpRequest, pk: int) -> HttpResponse:
    user, department = _department(request, pk)
    qs, params = _usage(request, user, department)
    try:
        blocked = _blocked(user, department, params)
    except ServiceError:  # already shown by ``filtered``
        blocked = SafetyHit.objects.none()
    targets = _targets(user, department)
    wanted = request.GET.get("target", "")
    form = QuotaForm(initial=_initial(wanted) if wanted in dict(targets) else {}, targets=targets)
    params.pop("department")
    context = {
        "department": department,
        "departments": Department.objects.restrict(user, VIEW).order_by("path"),
        "since": params.get("since", ""),
        "until": params.get("until", ""),
        "model": params.get("model", ""),
        "query": params.urlencode(),
        "by_user": summary(qs, GroupBy.USER),
        "by_model": summary(qs, GroupBy.MODEL),
        "refusals": reports.refusals(qs, blocked),
        "charts": chart_data(qs),
        "chart_labels": chart_labels(),
        "quotas": _quotas(user, department),
        "limit_labels": [label for _name, label in LimitName.choices],
        "form": form if targets else None,
        "targets": dict(targets),
    }
    return render(request, "console/usage_department.html", context)


def _export_header(group_by: str) -> list[str]:
    first = {GroupBy.USER: _("User"), GroupBy.MODEL: _("Model"), GroupBy.DAY: _("Day")}[GroupBy(group_by)]
    return [
        first,
        _("Requests"),
        _("Prompt tokens"),
        _("Completion tokens"),
        _("Total tokens"),
        _("Errors"),
        _("Rejected"),
        _("Mean latency (ms)"),
        _("Mean TTFT (ms)"),
    ]


def _export_rows(qs: QuerySet[UsageRecord], group_by: str) -> Iterator[list[Any]]:
    columns = reports.SUMMARY_COLUMNS[1:]  # the key (an id) is for programs; people read the name
    for row in reports.summarize(qs, group_by):
        data = reports.summary_row(row, group_by)
        yield [data[col] for col in columns]


@login_required
def department_usage_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """The page's table as CSV (UTF-8 with a BOM, so Excel reads Chinese names), headers in the reader's language."""
    user, department = _department(request, pk)
    group_by = request.GET.get("by") or GroupBy.USER
    if group_by not in EXPORT_GROUPS:
        raise Http404(_("Unknown grouping."))
    qs, _params = _usage(request, user, department)
    lines = reports.csv_lines(_export_header(group_by), _export_rows(qs, group_by))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-department-{department.pk}-by-{group_by}.csv"'
    return response


def _save(user: User, target: str, limits: dict[str, int | None]) -> None:
    kind, _sep, raw = target.partition(":")
    field = "department_id" if kind == DEPARTMENT_SCOPE_PREFIX else "user_id"
    existing = Quota.objects.filter(**{field: int(raw)}).values_list("pk", flat=True).first()
    if existing is not None:
        services.update_quota(user, existing, **limits)
    else:
        services.create_quota(user, **{field: int(raw)}, **limits)


@login_required
@require_POST
def department_quota_set(request: HttpRequest, pk: int) -> HttpResponse:
    user, department = _department(request, pk)
    if not may_set_quotas_in(user, department):
        raise PermissionDenied(_("You may not set quotas."))
    form = QuotaForm(request.POST, targets=_targets(user, department))
    page = reverse("usage-department", args=[department.pk])
    if not form.is_valid():
        for name, errors in form.errors.items():
            label = form.fields[name].label if name in form.fields else ""
            text = " ".join(str(e) for e in errors)
            messages.error(request, f"{label}: {text}" if label else text)
        return redirect(page)
    target = form.cleaned_data["target"]
    try:
        _save(user, target, {name: form.cleaned_data.get(name) for name in LIMIT_FIELDS})
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(page)
    names = dict(form.fields["target"].choices)  # type: ignore[attr-defined]
    messages.success(request, _("Quota saved: %(target)s.") % {"target": names[target]})
    return redirect(f"{page}?target={target}#quota-form")

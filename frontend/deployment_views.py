"""Deployment pages: list with live states, the create wizard, detail with events and logs."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from appliance.accounts.models import User, acting_user
from appliance.core.exceptions import ServiceError
from appliance.core.querysets import VIEW
from appliance.deployments import services
from appliance.deployments.choices import IDLE_MINUTES_DEFAULT, IDLE_MINUTES_MAX, IDLE_MINUTES_MIN
from appliance.deployments.models import Deployment
from appliance.deployments.permissions import may_manage_deployments
from frontend import deployment_wizard as wizard
from frontend.forms import set_choices


class DeploymentForm(forms.Form):
    profile_id = forms.TypedChoiceField(label=gettext_lazy("Profile"), coerce=int)
    department_id = forms.TypedChoiceField(label=gettext_lazy("Department pool"), coerce=int)
    name = forms.RegexField(label=gettext_lazy("Name"), regex=r"^[a-z0-9][a-z0-9-]{0,62}$", max_length=63)
    replicas = forms.IntegerField(label=gettext_lazy("Replicas"), min_value=1, max_value=16, initial=1)
    on_demand = forms.BooleanField(
        label=gettext_lazy("On demand: stop when idle, start again on the next request"), required=False
    )
    idle_minutes = forms.IntegerField(
        label=gettext_lazy("Idle minutes before it stops (on demand)"),
        min_value=IDLE_MINUTES_MIN, max_value=IDLE_MINUTES_MAX, initial=IDLE_MINUTES_DEFAULT,
    )  # fmt: skip


class OnDemandForm(forms.Form):
    on_demand = DeploymentForm.base_fields["on_demand"]
    idle_minutes = DeploymentForm.base_fields["idle_minutes"]


def _deployments(request: HttpRequest) -> QuerySet[Deployment]:
    return (
        Deployment.objects.restrict(acting_user(request), VIEW)
        .select_related("department", "profile_version__profile")
        .prefetch_related("instances__node")
    )


@login_required
def deployment_list(request: HttpRequest) -> HttpResponse:
    template = "deployments/_rows.html" if request.headers.get("HX-Request") else "deployments/list.html"
    user = acting_user(request)
    can_create = may_manage_deployments(user)
    return render(request, template, {"rows": _deployments(request), "can_create": can_create})


@login_required
def deployment_create(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    pools = user.managed_departments()
    department = wizard.pick_department(pools, request.POST.get("department_id") or request.GET.get("department"))
    options = wizard.profile_options(department)
    default = next((o for o in options if o.runnable), None)
    initial: dict[str, object] = {"department_id": department.pk if department else None}
    if default is not None:
        initial |= {"profile_id": default.profile.pk, "name": wizard.free_name(default.profile.slug)}
    form = DeploymentForm(request.POST or None, initial=initial)
    set_choices(form, "profile_id", [(o.profile.pk, o.profile.name) for o in options])
    set_choices(form, "department_id", [(d.pk, d.name) for d in pools])
    if request.method == "POST" and form.is_valid():
        try:
            dep = services.create_deployment(user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Deployment %(name)s created.") % {"name": dep.name})
            return redirect("deployment-detail", pk=dep.pk)
    chosen = str(form["profile_id"].value())
    context = {"form": form, "options": options, "chosen": chosen, "department": department}
    return render(request, "deployments/create.html", context)


@login_required
def deployment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dep = get_object_or_404(_deployments(request), pk=pk)
    template = "deployments/_status.html" if request.headers.get("HX-Request") else "deployments/detail.html"
    context = {
        "dep": dep,
        "info": services.describe(dep),
        "events": dep.events.all()[:50],
        # The console's own endpoint (keys, quotas, audit); the engine's address would bypass all three.
        "api_base": request.build_absolute_uri("/v1"),
    }
    if template.endswith("detail.html"):
        context["on_demand_form"] = OnDemandForm(initial={"on_demand": dep.on_demand, "idle_minutes": dep.idle_minutes})
    return render(request, template, context)


@login_required
@require_POST
def deployment_on_demand(request: HttpRequest, pk: int) -> HttpResponse:
    form = OnDemandForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("deployment-detail", pk=pk)
    try:
        services.set_on_demand(acting_user(request), pk, **form.cleaned_data)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("On-demand setting saved."))
    return redirect("deployment-detail", pk=pk)


@login_required
@require_POST
def deployment_action(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    operations: dict[str, Callable[[User, int], object]] = {
        "start": services.start_deployment,
        "stop": services.stop_deployment,
        "restart": services.restart_deployment,
        "delete": services.delete_deployment,
    }
    if verb not in operations:
        return redirect("deployment-detail", pk=pk)
    try:
        operations[verb](acting_user(request), pk)
    except ServiceError as exc:
        messages.error(request, exc.message)
    if verb == "delete" and not Deployment.objects.filter(pk=pk).exists():
        return redirect("deployments")
    return redirect("deployment-detail", pk=pk)

"""Pages of the catalog app: SKU profiles with their fit, a profile's versions, the model catalog, the calculator."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from appliance.accounts.models import Department, User, acting_user
from appliance.catalog import services
from appliance.catalog.catalog import default_catalog
from appliance.catalog.choices import KV_DTYPES, PRECISIONS, Engine
from appliance.catalog.models import CustomModel, Profile, ProfileVersion
from appliance.catalog.permissions import fits_own_pool_by_default, may_manage_catalog
from appliance.catalog.planner import PLAN_KEYS
from appliance.core.exceptions import PermissionDenied, ServiceError
from appliance.core.querysets import VIEW
from frontend.catalog_forms import CustomModelForm, ProfileForm
from frontend.forms import set_choices


def _model_choices() -> list[tuple[str | int, str]]:
    return [(slug, f"{entry.display_name} ({slug})") for slug, entry in services.merged_catalog().items()]


def _profile_form(data: Any, initial: dict[str, Any] | None = None) -> ProfileForm:
    form = ProfileForm(data, initial=initial)
    set_choices(form, "model", _model_choices())
    return form


def _fit_scope(request: HttpRequest, user: User) -> tuple[Department | None, str]:
    try:
        return services.fit_department(user, request.GET.get("department")), ""
    except ServiceError as exc:
        return services.fit_department(user, None), exc.message


def _create_from_form(request: HttpRequest, form: ProfileForm, user: User) -> Profile | None:
    if request.method != "POST" or not form.is_valid():
        return None
    try:
        return services.create_profile(user, **form.service_data())
    except PermissionDenied as exc:
        messages.error(request, exc.message)  # the form is not shown to them
    except ServiceError as exc:
        form.add_error(None, exc.message)
    return None


@login_required
def profiles(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    form = _profile_form(request.POST or None)
    created = _create_from_form(request, form, user)
    if created is not None:
        messages.success(request, _("Profile %(name)s created.") % {"name": created.name})
        return redirect("profile-detail", pk=created.pk)
    department, error = _fit_scope(request, user)
    if error:
        messages.error(request, error)
    rows = list(Profile.objects.restrict(user, VIEW).active().select_related("current_version"))
    fits = services.fits(rows, department)
    context = {
        "rows": [(profile, fits.get(profile.pk)) for profile in rows],
        "departments": Department.objects.restrict(user, VIEW),
        "department": department,
        "form": form,
        "can_manage": may_manage_catalog(user),
        "own_pool": fits_own_pool_by_default(user),
    }
    return render(request, "catalog/profiles.html", context)


def _visible_profile(user: User, pk: int) -> Profile:
    profile = Profile.objects.restrict(user, VIEW).active().select_related("current_version").filter(pk=pk).first()
    if profile is None or profile.current_version is None:
        raise Http404
    return profile


def _edit_initial(profile: Profile) -> dict[str, Any]:
    assert profile.current_version is not None
    identity = {"slug": profile.slug, "name": profile.name, "tier": profile.tier, "description": profile.description}
    return {**identity, **profile.current_version.spec()}


@login_required
def profile_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user = acting_user(request)
    profile = _visible_profile(user, pk)
    form = _profile_form(request.POST or None, initial=_edit_initial(profile))
    if request.method == "POST" and form.is_valid():
        try:
            services.update_profile(user, pk, **form.service_data())
        except PermissionDenied as exc:
            messages.error(request, exc.message)  # the form is not shown to them
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Profile saved."))
            return redirect("profile-detail", pk=pk)
    department, error = _fit_scope(request, user)
    versions = ProfileVersion.objects.restrict(user, VIEW).filter(profile=profile).select_related("created_by")
    context = {
        "profile": profile,
        "spec": profile.current_version,
        "plan": services.spec_plan(profile.current_version) if profile.current_version else None,
        "fit": services.fits([profile], department).get(profile.pk),
        "department": department,
        "departments": Department.objects.restrict(user, VIEW),
        "versions": versions,
        "form": form,
        "can_manage": may_manage_catalog(user),
        "own_pool": fits_own_pool_by_default(user),
        "scope_error": error,
    }
    return render(request, "catalog/profile_detail.html", context)


@login_required
@require_POST
def profile_archive(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        services.archive_profile(acting_user(request), pk)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("profile-detail", pk=pk)
    messages.success(request, _("Profile archived."))
    return redirect("profiles")


@login_required
def catalog(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    form = CustomModelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            custom = services.create_custom_model(user, form.cleaned_data["entry"])
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Model %(slug)s added.") % {"slug": custom.slug})
            return redirect("catalog")
    customs = list(CustomModel.objects.restrict(user, VIEW))
    entries = [(entry, True) for entry in default_catalog().values()]
    entries += [(custom.entry(), False) for custom in customs if custom.slug not in default_catalog()]
    rows = [(entry, builtin, f"{entry.parameters / 1e9:.1f}") for entry, builtin in entries]
    context = {"rows": rows, "form": form, "can_manage": may_manage_catalog(user)}
    return render(request, "catalog/catalog.html", context)


@login_required
@require_POST
def catalog_delete(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        services.delete_custom_model(acting_user(request), slug)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Model %(slug)s removed.") % {"slug": slug})
    return redirect("catalog")


def _plan_labels() -> list[tuple[str, str]]:
    labels = {
        "model": _("Model"),
        "engine": _("Engine"),
        "dtype": _("Weights dtype"),
        "kv_dtype": _("KV cache dtype"),
        "context_length": _("Context length"),
        "gpus_used": _("GPUs used"),
        "tensor_parallel": _("Tensor parallel"),
        "pipeline_parallel": _("Pipeline parallel"),
        "suggested_tensor_parallel": _("Smallest tensor parallel that fits"),
        "weights_bytes": _("Weights"),
        "weights_bytes_per_gpu": _("Weights per GPU"),
        "reserve_bytes_per_gpu": _("Engine reserve per GPU"),
        "kv_bytes_per_token": _("KV cache per token"),
        "kv_cache_bytes": _("KV cache"),
        "max_tokens_in_cache": _("Tokens in cache"),
        "max_concurrent_sequences": _("Max concurrent sequences"),
        "fits": _("Fits"),
        "reason": _("Reason"),
        "n_gpu_layers": _("GPU layers (--n-gpu-layers)"),
        "cpu_ram_bytes": _("Host RAM"),
    }
    return [(key, labels[key]) for key in PLAN_KEYS]


@login_required
def capacity(request: HttpRequest) -> HttpResponse:
    presets = {
        p.slug: {"name": p.name, **p.current_version.spec()}
        for p in Profile.objects.restrict(request.user, VIEW).active().select_related("current_version")
        if p.current_version is not None
    }
    context = {
        "models": _model_choices(),
        "engines": Engine.choices,
        "precisions": PRECISIONS,
        "kv_dtypes": KV_DTYPES,
        "labels": _plan_labels(),
        "presets": presets,
    }
    return render(request, "catalog/capacity.html", context)

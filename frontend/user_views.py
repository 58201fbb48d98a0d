"""User edit, role change and password reset pages. Who may edit whom is the permission gate's and the
services' decision (``restrict(user, CHANGE)``, the role-grant check); these pages only offer what they allow."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from appliance.accounts import services
from appliance.accounts.choices import Role
from appliance.accounts.models import User, acting_user
from appliance.accounts.permissions import departments_for, grantable_roles, may_place_users_outside_departments
from appliance.core.exceptions import ServiceError
from appliance.core.querysets import CHANGE, VIEW
from frontend.forms import PasswordResetForm, UserEditForm, set_choices


def _editable(actor: User, pk: int) -> User:
    target = User.objects.restrict(actor, CHANGE).select_related("department").filter(pk=pk).first()
    if target is None:
        # As the API: a user one may see but not change is refused; one outside one's scope is not revealed.
        if User.objects.restrict(actor, VIEW).filter(pk=pk).exists():
            raise PermissionDenied
        raise Http404(_("User not found."))
    return target


def _edit_form(actor: User, target: User, data: Any = None) -> UserEditForm:
    initial = {
        "display_name": target.display_name,
        "email": target.email,
        "department_id": target.department_id,
        "role": target.role,
        "is_active": target.is_active,
    }
    form = UserEditForm(data, initial=initial)
    departments: list[tuple[str | int, str]] = [(d.pk, d.name) for d in departments_for(actor, CHANGE)]
    outside = may_place_users_outside_departments(actor)
    set_choices(form, "department_id", [("", "—"), *departments] if outside else departments)
    grantable = grantable_roles(actor)
    if target.role not in grantable or target.pk == actor.pk:
        # A role the actor may not grant is one they may not take away either; nobody demotes themselves here.
        form.fields["role"].disabled = True
    set_choices(form, "role", [(r, str(Role(r).label)) for r in Role.values if r in grantable or r == target.role])
    if target.pk == actor.pk:
        form.fields["is_active"].disabled = True
    return form


@login_required
def user_edit(request: HttpRequest, pk: int) -> HttpResponse:
    actor = acting_user(request)
    target = _editable(actor, pk)
    form = _edit_form(actor, target, request.POST or None)
    if request.method == "POST" and form.is_valid():
        changes = {name: value for name, value in form.cleaned_data.items() if not form.fields[name].disabled}
        try:
            services.update_user(actor, pk, **changes)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("User %(name)s saved.") % {"name": target.username})
            return redirect("users")
    context = {"target": target, "form": form, "password_form": PasswordResetForm()}
    return render(request, "console/user_edit.html", context)


@login_required
@require_POST
def user_password(request: HttpRequest, pk: int) -> HttpResponse:
    actor = acting_user(request)
    target = _editable(actor, pk)
    if target.pk == actor.pk:
        return redirect("password")  # one's own password needs the current one
    form = PasswordResetForm(request.POST)
    if form.is_valid():
        try:
            services.set_password(actor, pk, form.cleaned_data["new_password"])
        except ServiceError as exc:
            form.add_error("new_password", exc.message)
        else:
            messages.success(request, _("Password of %(name)s reset.") % {"name": target.username})
            return redirect("users")
    context = {"target": target, "form": _edit_form(actor, target), "password_form": form}
    return render(request, "console/user_edit.html", context, status=400)

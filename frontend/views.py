"""Server-rendered pages. Each page calls the same services and permission gate as the API."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from appliance.accounts import services, signin
from appliance.accounts.choices import Role
from appliance.accounts.models import ApiKey, Department, User, acting_user
from appliance.accounts.permissions import (
    departments_for,
    grantable_roles,
    may_create_api_keys,
    may_create_users,
    may_manage_departments,
)
from appliance.audit.api.views import filter_audit
from appliance.audit.models import AuditRecord
from appliance.core.exceptions import ServiceError
from appliance.core.querysets import CHANGE, VIEW
from appliance.monitoring.permissions import may_see_dashboard
from frontend.dashboard_views import dashboard_page
from frontend.forms import ApiKeyForm, DepartmentForm, LoginForm, PasswordForm, UserForm, set_choices


def login_view(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        user, error = signin.attempt_login(request, form.cleaned_data["username"], form.cleaned_data["password"])
        if user is not None:
            login(request, user)
            return redirect(_safe_next(request) or "home")
    context = {"form": form, "error": error, "sso": settings.APPLIANCE_OIDC_ENABLED, "next": _safe_next(request)}
    return render(request, "registration/login.html", context)


def _safe_next(request: HttpRequest) -> str | None:
    """``next`` when it stays on this site; a link to /login/?next=https://evil… must not bounce there."""
    target = request.GET.get("next", "")
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and allowed else None


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("login")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    if not may_see_dashboard(user):
        return render(request, "portal/home.html", {"key_count": ApiKey.objects.restrict(user, VIEW).usable().count()})
    return dashboard_page(request, user)


@login_required
def password_change(request: HttpRequest) -> HttpResponse:
    form = PasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = acting_user(request)
            services.set_password(
                user,
                user.pk,
                form.cleaned_data["new_password"],
                old_password=form.cleaned_data["old_password"],
            )
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            update_session_auth_hash(request, user)
            messages.success(request, _("Password changed."))
            return redirect("home")
    return render(request, "console/password.html", {"form": form})


def _department_choices(user: User, action: str = VIEW) -> list[tuple[str | int, str]]:
    return [("", "—"), *[(d.pk, d.name) for d in departments_for(user, action)]]


@login_required
def departments(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    form = DepartmentForm(request.POST or None)
    set_choices(form, "parent_id", _department_choices(user))
    if request.method == "POST" and form.is_valid():
        try:
            dept = services.create_department(user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Department %(name)s created.") % {"name": dept.name})
            return redirect("departments")
    rows = Department.objects.restrict(user, VIEW).select_related("parent")
    return render(
        request,
        "console/departments.html",
        {"form": form, "rows": rows, "can_create": may_manage_departments(user)},
    )


@login_required
def users(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    form = UserForm(request.POST or None)
    set_choices(form, "department_id", _department_choices(user, CHANGE))
    set_choices(form, "role", [(r, str(Role(r).label)) for r in grantable_roles(user)])
    if request.method == "POST" and form.is_valid():
        try:
            created = services.create_user(user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("User %(name)s created.") % {"name": created.username})
            return redirect("users")
    users_shown = User.objects.restrict(user, VIEW).select_related("department", "external_identity")
    page = Paginator(users_shown, 50).get_page(request.GET.get("page"))
    can_create = may_create_users(user)
    shown = [u.pk for u in page]
    manageable = set(User.objects.restrict(user, CHANGE).filter(pk__in=shown).values_list("pk", flat=True))
    context = {"form": form, "page": page, "can_create": can_create, "manageable": manageable}
    return render(request, "console/users.html", context)


@login_required
@require_POST
def user_toggle_active(request: HttpRequest, pk: int) -> HttpResponse:
    target = User.objects.restrict(request.user, CHANGE).filter(pk=pk).first()
    try:
        if target is None:
            raise ServiceError(_("User not found."))
        services.update_user(acting_user(request), pk, is_active=not target.is_active)
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("users")


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    form = ApiKeyForm(request.POST or None)
    can_create = may_create_api_keys(user)
    owners = User.objects.restrict(user, CHANGE).filter(is_service_account=True) if can_create else []
    set_choices(form, "user_id", [("", _("Myself")), *[(u.pk, u.username) for u in owners]])
    created_secret = None
    if request.method == "POST" and form.is_valid():
        try:
            _key, created_secret = services.create_api_key(user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.message)
    rows = list(ApiKey.objects.restrict(user, VIEW).select_related("user")[:200])
    shown = [k.pk for k in rows]
    revocable = set(ApiKey.objects.restrict(user, CHANGE).filter(pk__in=shown).values_list("pk", flat=True))
    context = {"form": form, "rows": rows, "secret": created_secret, "revocable": revocable, "can_create": can_create}
    return render(request, "console/api_keys.html", context)


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        services.revoke_api_key(acting_user(request), pk)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Key revoked."))
    return redirect("api-keys")


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    qs: QuerySet[AuditRecord] = AuditRecord.objects.restrict(request.user, VIEW)
    try:
        qs = filter_audit(qs, request.GET)
    except ServiceError as exc:
        messages.error(request, exc.message)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    offset = timezone.localtime().strftime("UTC%z")
    context = {"page": page, "query": query.urlencode(), "tz_offset": f"{offset[:-2]}:{offset[-2:]}"}
    return render(request, "console/audit_log.html", context)

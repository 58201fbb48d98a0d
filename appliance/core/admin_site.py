"""The Django admin, when it is switched on (``CONSOLE_DJANGO_ADMIN=True``; off by default).

Its own login form checks a password with neither the console's throttling nor its audit record,
so it is replaced by a redirect to the console's login; and it admits by role (platform admins),
not by Django's ``is_staff``/``is_superuser`` flags, which the console does not manage.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy

from appliance.core.permissions import may_administer


def is_platform_admin(request: HttpRequest) -> bool:
    return may_administer(request.user)


class ConsoleAdminSite(admin.AdminSite):
    site_header = gettext_lazy("Appliance console")
    site_title = gettext_lazy("Appliance console")

    def has_permission(self, request: HttpRequest) -> bool:
        return is_platform_admin(request)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        target = request.GET.get("next") or reverse("admin:index", current_app=self.name)
        return redirect_to_login(target, reverse("login"))


class PlatformAdminReadOnly(admin.ModelAdmin):
    """Read-only for platform admins: every change goes through services, so it is audited."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_platform_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_admin(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

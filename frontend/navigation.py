"""The console's menu: each entry is shown to the users its app's permission predicate admits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from appliance.accounts.models import User
from appliance.accounts.permissions import may_see_admin_pages, may_use_portal
from appliance.sso.permissions import may_view_sign_in_rules


@dataclass(frozen=True)
class MenuItem:
    url_name: str
    label: Any
    shown: Callable[[User], bool]


MENU: list[MenuItem] = [
    MenuItem("home", _("Overview"), may_use_portal),
    MenuItem("chat", _("Chat"), may_use_portal),
    MenuItem("departments", _("Departments"), may_see_admin_pages),
    MenuItem("users", _("Users"), may_see_admin_pages),
    MenuItem("api-keys", _("API keys"), may_use_portal),
    MenuItem("audit-log", _("Audit log"), may_see_admin_pages),
    MenuItem("nodes", _("Nodes"), may_see_admin_pages),
    MenuItem("gpus", _("GPUs"), may_use_portal),
    MenuItem("gpu-quotas", _("GPU quotas"), may_see_admin_pages),
    MenuItem("profiles", _("SKU profiles"), may_see_admin_pages),
    MenuItem("catalog", _("Model catalog"), may_see_admin_pages),
    MenuItem("capacity", _("Capacity planner"), may_see_admin_pages),
    MenuItem("usage", _("My usage"), may_use_portal),
    MenuItem("usage-departments", _("Department usage"), may_see_admin_pages),
    MenuItem("deployments", _("Deployments"), may_see_admin_pages),
    MenuItem("images", _("Images"), may_see_admin_pages),
    MenuItem("word-lists", _("Word lists"), may_see_admin_pages),
    MenuItem("safety-hits", _("Content-safety hits"), may_see_admin_pages),
    MenuItem("sign-in-rules", _("Sign-in rules"), may_view_sign_in_rules),
]


def menu_for(user: User) -> list[MenuItem]:
    return [item for item in MENU if item.shown(user)]


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Template context: the menu entries of the admin console layout for the signed-in user."""
    user = getattr(request, "user", None)
    return {"nav_items": menu_for(user) if isinstance(user, User) and user.is_authenticated else []}

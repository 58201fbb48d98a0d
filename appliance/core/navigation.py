"""The console's menu by role; later apps append their entries to MENU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _

ALL = ("platform_admin", "department_admin", "member", "auditor")
ADMINS = ("platform_admin", "department_admin", "auditor")


@dataclass(frozen=True)
class MenuItem:
    url_name: str
    label: Any
    roles: tuple[str, ...]


MENU: list[MenuItem] = [
    MenuItem("home", _("Overview"), ALL),
    MenuItem("chat", _("Chat"), ALL),
    MenuItem("departments", _("Departments"), ADMINS),
    MenuItem("users", _("Users"), ADMINS),
    MenuItem("api-keys", _("API keys"), ALL),
    MenuItem("audit-log", _("Audit log"), ADMINS),
    MenuItem("nodes", _("Nodes"), ADMINS),
    MenuItem("gpus", _("GPUs"), ALL),
    MenuItem("gpu-quotas", _("GPU quotas"), ADMINS),
    MenuItem("profiles", _("SKU profiles"), ADMINS),
    MenuItem("catalog", _("Model catalog"), ADMINS),
    MenuItem("capacity", _("Capacity planner"), ADMINS),
    MenuItem("usage", _("My usage"), ALL),
    MenuItem("usage-departments", _("Department usage"), ADMINS),
    MenuItem("deployments", _("Deployments"), ADMINS),
    MenuItem("images", _("Images"), ADMINS),
    MenuItem("word-lists", _("Word lists"), ADMINS),
    MenuItem("safety-hits", _("Content-safety hits"), ADMINS),
    MenuItem("sign-in-rules", _("Sign-in rules"), ("platform_admin", "auditor")),
]


def menu_for(user: Any) -> list[MenuItem]:
    return [item for item in MENU if user.role in item.roles]

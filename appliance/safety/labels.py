"""The "AI-generated" label on answers: whether it is shown for a user's department, and changing that.

The nearest setting up the department's lineage wins (its own, then its parent's, …, then the
platform's); with none at all the label is shown, as the labelling rules require by default.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from appliance.accounts.models import Department, User
from appliance.audit import services as audit
from appliance.core.exceptions import PermissionDenied
from appliance.safety.models import AiLabelSetting
from appliance.safety.permissions import may_manage_platform_safety

HEADER = "X-AI-Generated"


def shown_for(department_id: int | None) -> bool:
    lineage: list[int] = []
    if department_id is not None:
        path = Department.objects.filter(pk=department_id).values_list("path", flat=True).first() or ""
        lineage = [int(part) for part in path.strip("/").split("/") if part]
    found = dict(AiLabelSetting.objects.filter(department_id__in=lineage).values_list("department_id", "enabled"))
    for pk in reversed(lineage):  # nearest first
        if pk in found:
            return found[pk]
    platform = AiLabelSetting.objects.filter(department__isnull=True).values_list("enabled", flat=True).first()
    return True if platform is None else platform


def header_value(model: str) -> str:
    """Names the model and the appliance that generated the answer, e.g. ``model="qwen3-8b"; appliance="appliance"``."""
    return f'model="{model}"; appliance="{settings.CONSOLE_ID}"'


@transaction.atomic
def set_shown(actor: User, department_id: int | None, enabled: bool) -> AiLabelSetting:
    """Platform admins set the platform's default and any department's; department admins their subtree's."""
    if department_id is None:
        if not may_manage_platform_safety(actor):
            raise PermissionDenied(_("Only platform admins set the platform's AI-label default."))
    elif not actor.managed_departments().filter(pk=department_id).exists():
        raise PermissionDenied(_("You may not change the AI label of this department."))
    scope: dict[str, object] = (
        {"department__isnull": True} if department_id is None else {"department_id": department_id}
    )
    setting = AiLabelSetting.objects.select_for_update().filter(**scope).first()
    before = {"enabled": setting.enabled} if setting is not None else None
    if setting is None:
        setting = AiLabelSetting(department_id=department_id)
    setting.enabled = enabled
    setting.save()
    audit.record("safety.ai_label.set", actor=actor, target=setting, department_id=department_id, before=before,
                 after={"department": department_id, "enabled": enabled})  # fmt: skip
    return setting

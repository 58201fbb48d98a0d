"""Who may set the platform-wide content-safety settings and who changes any at all.

Which word lists, hits and AI-label settings a user sees or changes per department is ``restrict``
and ``User.managed_departments``; what is platform-wide (no department) is decided here.
"""

from __future__ import annotations

from appliance.accounts.models import User


def may_manage_platform_safety(actor: User) -> bool:
    """Platform-wide word lists and the platform's AI-label default."""
    return actor.is_platform_admin


def may_see_platform_safety(user: User) -> bool:
    return user.is_platform_admin or user.is_auditor


def may_change_safety(user: User) -> bool:
    """Auditors read the settings and change none; the pages offer others the forms (the services decide where)."""
    return not user.is_auditor

"""Who may see and change the sign-in rules: platform admins change them, auditors read them."""

from __future__ import annotations

from appliance.accounts.models import User


def may_manage_sign_in_rules(user: User) -> bool:
    return user.is_platform_admin


def may_view_sign_in_rules(user: User) -> bool:
    return user.is_platform_admin or user.is_auditor

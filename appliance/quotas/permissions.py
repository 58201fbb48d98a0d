"""Who may set which quota. Mirrors ``Quota.restrict_scope`` for targets that have no quota yet."""

from __future__ import annotations

from appliance.accounts.models import Department, User


def may_manage_department(actor: User, department: Department) -> bool:
    """Platform admins: any department. Department admins: departments below their own."""
    if actor.is_platform_admin:
        return True
    own = actor.department
    if not actor.is_department_admin or own is None:
        return False
    return department.pk != own.pk and department.path.startswith(own.path)


def may_manage_user(actor: User, user: User) -> bool:
    """Platform admins: anyone. Department admins: the users of their subtree they outrank."""
    if actor.is_platform_admin:
        return True
    own, theirs = actor.department, user.department
    if not actor.is_department_admin or own is None or theirs is None:
        return False
    return actor.outranks(user) and theirs.path.startswith(own.path)

"""Who may see and set which quota, in one place: the gate's queryset form (``Quota.restrict_scope``)
and the same rule for a target that has no quota yet (``may_manage_department``, ``may_manage_user``).

Department admins set quotas below their own department (their own department's quota is set from
above) and for the users of their subtree they outrank; they see their subtree's. Others see their
own and their department lineage's. Platform admins and auditors are the gate's (``restrict``).
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Q, QuerySet

from appliance.accounts.choices import roles_below
from appliance.accounts.models import Department, User
from appliance.core.querysets import VIEW

_QS = TypeVar("_QS", bound=QuerySet[Any])


def quota_scope(qs: _QS, user: User, action: str) -> _QS:
    """``Quota.restrict_scope``: the quotas ``user`` (not a platform admin or auditor) may see or change."""
    dept = user.department
    if dept is None:
        return qs.filter(user=user) if action == VIEW else qs.none()
    subtree = Q(department__path__startswith=dept.path)
    users_subtree = Q(user__department__path__startswith=dept.path)
    if user.is_department_admin and action == VIEW:
        return qs.filter(subtree | users_subtree)
    if user.is_department_admin:
        # The object form of these two filters is may_manage_department / may_manage_user below.
        below = subtree & ~Q(department_id=dept.pk)
        # Users: only those it outranks (never its own quota, a peer's or a platform admin's).
        outranked = users_subtree & Q(user__role__in=roles_below(user.role))
        return qs.filter(below | outranked)
    if action == VIEW:
        return qs.filter(Q(user=user) | Q(department_id__in=dept.lineage_ids()))
    return qs.none()


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

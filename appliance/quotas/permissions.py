"""Who may see and set which quota, in one place: the gate's queryset form (``Quota.restrict_scope``)
and the same rule for a target that has no quota yet (``may_manage_department``, ``may_manage_user``).

Department admins set quotas below their own department (their own department's quota is set from
above) and for the users of their subtree they outrank; they see their subtree's. Others see their
own and their department lineage's. Platform admins and auditors are the gate's (``restrict``).
Also who may read which usage page.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Q, QuerySet

from appliance.accounts.choices import roles_below
from appliance.accounts.models import Department, User
from appliance.core.querysets import VIEW
from appliance.safety.choices import Action
from appliance.safety.models import SafetyHit

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


def may_view_department_usage(actor: User, department: Department) -> bool:
    """The department usage page. Platform admins and auditors: any department. Department admins: their
    own and those below it (as ``UsageRecord.restrict_scope``). Members: none (they have their own page)."""
    if actor.is_platform_admin or actor.is_auditor:
        return True
    own = actor.department
    return actor.is_department_admin and own is not None and department.path.startswith(own.path)


def own_blocked_hits(user: User) -> QuerySet[SafetyHit]:
    """A user's own content-safety blocks, counted on their usage page. The words and text matched are
    never shown there: those stay with admins and auditors (``SafetyHit.restrict_scope``)."""
    return SafetyHit.objects.filter(user=user, action=Action.BLOCK)


def may_set_quotas_in(actor: User, department: Department) -> bool:
    """Whether the department's usage page offers the quota form: to platform admins, and to department
    admins for their own department and those below it (where it lists what ``may_manage_*`` allows)."""
    if actor.is_auditor or not (actor.is_platform_admin or actor.is_department_admin):
        return False
    return may_view_department_usage(actor, department)


def may_view_every_department_usage(user: User) -> bool:
    """Platform admins and auditors read the usage of any department (and pick among them)."""
    return user.is_platform_admin or user.is_auditor

"""Quota operations (each owns its transaction and audits inside it) and the scopes a request counts against."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from appliance.accounts.models import Department, User
from appliance.audit import services as audit
from appliance.core.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied
from appliance.core.querysets import CHANGE, DELETE, VIEW
from appliance.quotas.choices import DEPARTMENT_SCOPE_PREFIX, USER_SCOPE_PREFIX
from appliance.quotas.limiter import QuotaScope, ScopeUsage, acurrent_usage, current_usage
from appliance.quotas.models import LIMIT_FIELDS, Quota
from appliance.quotas.permissions import may_manage_department, may_manage_user


def _check_limits(limits: dict[str, Any]) -> None:
    unknown = sorted(set(limits) - set(LIMIT_FIELDS))
    if unknown:
        raise InvalidInput(f"Unknown fields: {', '.join(unknown)}", code="unknown_field")
    for name, value in limits.items():
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidInput(f"{name}: a whole number ≥ 0, or null for unlimited", details={name: ["invalid"]})


def _target_department(actor: User, department_id: int) -> Department:
    dept = Department.objects.restrict(actor, VIEW).filter(pk=department_id).first()
    if dept is None:
        message = f"Department {department_id} does not exist or is not yours."
        raise InvalidInput(message, code="invalid_department", details={"department": [message]})
    if not may_manage_department(actor, dept):
        raise PermissionDenied(_("You may not set the quota of this department."))
    return dept


def _target_user(actor: User, user_id: int) -> User:
    user = User.objects.restrict(actor, VIEW).select_related("department").filter(pk=user_id).first()
    if user is None:
        message = f"User {user_id} does not exist or is not yours."
        raise InvalidInput(message, code="invalid_user", details={"user": [message]})
    if not may_manage_user(actor, user):
        raise PermissionDenied(_("You may not set the quota of this user."))
    return user


def _audit_department(quota: Quota) -> int | None:
    if quota.department_id is not None:
        return quota.department_id
    return quota.user.department_id if quota.user is not None else None


@transaction.atomic
def create_quota(actor: User, *, department_id: int | None = None, user_id: int | None = None, **limits: Any) -> Quota:
    """Give a department or a user a quota (exactly one of the two)."""
    if (department_id is None) == (user_id is None):
        message = "Give either a department or a user."
        raise InvalidInput(message, details={"department": [message], "user": [message]})
    _check_limits(limits)
    quota = Quota(**limits)
    if department_id is not None:
        quota.department = _target_department(actor, department_id)
    else:
        quota.user = _target_user(actor, user_id)  # type: ignore[arg-type]
    try:
        with transaction.atomic():
            quota.save()
    except IntegrityError:
        raise Conflict("That department or user already has a quota; change it instead.", code="duplicate") from None
    audit.record(
        "quota.create", actor=actor, target=quota, department_id=_audit_department(quota), after=quota.audit_snapshot()
    )
    return quota


def _lock_quota(actor: User, quota_id: int, action: str) -> Quota:
    quota = (
        Quota.objects.restrict(actor, action)
        .select_for_update()
        .select_related("department", "user")
        .filter(pk=quota_id)
        .first()
    )
    if quota is None:
        if Quota.objects.restrict(actor, VIEW).filter(pk=quota_id).exists():
            raise PermissionDenied(_("You may not change this quota."))
        raise NotFound("Quota not found.")
    return quota


@transaction.atomic
def update_quota(actor: User, quota_id: int, **limits: Any) -> Quota:
    quota = _lock_quota(actor, quota_id, CHANGE)
    _check_limits(limits)
    before = quota.audit_snapshot()
    for name, value in limits.items():
        setattr(quota, name, value)
    quota.save()
    audit.record(
        "quota.update",
        actor=actor,
        target=quota,
        department_id=_audit_department(quota),
        before=before,
        after=quota.audit_snapshot(),
    )
    return quota


@transaction.atomic
def delete_quota(actor: User, quota_id: int) -> None:
    """Remove a quota: its department or user becomes unlimited (ancestors' quotas still apply)."""
    quota = _lock_quota(actor, quota_id, DELETE)
    before = quota.audit_snapshot()
    audit.record("quota.delete", actor=actor, target=quota, department_id=_audit_department(quota), before=before)
    quota.delete()


# --- what a request counts against ------------------------------------------------------------


def _scope(key: str, quota: Quota | None, label: str) -> QuotaScope:
    limits = quota.limits() if quota is not None else {}
    return QuotaScope(key=key, label=label, **limits)


def scopes_for(user: User) -> list[QuotaScope]:
    """The user's own scope, then their department's, then each ancestor's, up to the root.

    Every scope is returned even without a quota row (all limits None), so its counters run and a
    quota set in the middle of a day already knows that day's use. One query (two if
    ``user.department`` is not loaded yet).
    """
    chain = user.department.lineage_ids() if user.department is not None else []
    rows = Quota.objects.filter(Q(user_id=user.pk) | Q(department_id__in=chain)).select_related("department")
    return _scopes(user, chain, rows)


@dataclass(frozen=True)
class DepartmentQuotas:
    """The quotas of a department, of its ancestors and of its users, read in one query: what
    :func:`scopes_in` needs for any user of the department (kept per department by the chat)."""

    department_id: int | None
    chain: list[int]
    rows: list[Quota]


def department_quotas(department: Department | None) -> DepartmentQuotas:
    if department is None:
        return DepartmentQuotas(None, [], [])
    chain = department.lineage_ids()
    rows = Quota.objects.filter(Q(user__department_id=department.pk) | Q(department_id__in=chain))
    return DepartmentQuotas(department.pk, chain, list(rows.select_related("department")))


def scopes_in(user: User, quotas: DepartmentQuotas) -> list[QuotaScope]:
    """:func:`scopes_for` of a user of the department ``quotas`` were read for, without a query."""
    if user.department_id != quotas.department_id or user.department_id is None:
        return scopes_for(user)
    return _scopes(user, quotas.chain, [q for q in quotas.rows if q.user_id in (None, user.pk)])


def _scopes(user: User, chain: list[int], rows: Iterable[Quota]) -> list[QuotaScope]:
    by_dept = {q.department_id: q for q in rows if q.department_id is not None}
    own = next((q for q in rows if q.user_id == user.pk), None)
    scopes = [_scope(f"{USER_SCOPE_PREFIX}:{user.pk}", own, user.get_username())]
    for dept_id in reversed(chain):
        quota = by_dept.get(dept_id)
        # Only scopes with limits can refuse, so only they need a readable label.
        label = quota.department.name if quota is not None and quota.department is not None else ""
        scopes.append(_scope(f"{DEPARTMENT_SCOPE_PREFIX}:{dept_id}", quota, label))
    return scopes


def remaining_for(user: User) -> dict[str, Any]:
    """The limits that apply to ``user`` and what is used of them now (chat portal, usage page)."""
    return remaining_in(scopes_for(user))


def remaining_in(scopes: list[QuotaScope]) -> dict[str, Any]:
    """What is used now of each of ``scopes`` (``scopes_for``), with their limits."""
    return _report(scopes, current_usage(scopes))


async def aremaining_in(scopes: list[QuotaScope]) -> dict[str, Any]:
    """:func:`remaining_in` from an event loop."""
    return _report(scopes, await acurrent_usage(scopes))


def _report(scopes: list[QuotaScope], usage: list[ScopeUsage] | None) -> dict[str, Any]:
    rows = []
    for index, scope in enumerate(scopes):
        row: dict[str, Any] = {**asdict(scope), "usage": None}
        if usage is not None:
            row["usage"] = {k: v for k, v in asdict(usage[index]).items() if k != "scope"}
        rows.append(row)
    return {"available": usage is not None, "scopes": rows}

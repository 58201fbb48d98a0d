"""Assigning GPU units to department pools, GPU quotas and node maintenance; platform admins only.

Every operation owns its transaction and writes its audit records inside it. Lock order, the same
everywhere so that racing requests queue instead of deadlocking: the units in primary-key order,
then the target department's quota row, then the audit chain head (taken by the audit records,
written last). The inventory sync follows the same order (see sync.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from appliance.accounts.models import Department, User
from appliance.audit import services as audit
from appliance.core.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied, QuotaExceeded
from appliance.core.querysets import VIEW
from appliance.gpus.choices import GIB, NodeState, PresenceState, UnitFlag
from appliance.gpus.models import GpuQuota, GpuUnit, Node, UnitClaim, audit_snapshot
from appliance.gpus.nodes import is_fresh
from appliance.gpus.permissions import may_manage_gpus

HolderStopper = Callable[[User, list[UnitClaim]], None]
# Called by a forced release or move with the claims on the units, before the claims are dropped.
# Issue 5 (deployments) registers the function that stops the deployments holding them; until
# then nothing outside tests creates claims and a forced release only removes them.
HOLDER_STOPPERS: list[HolderStopper] = []


def register_holder_stopper(stopper: HolderStopper) -> None:
    if stopper not in HOLDER_STOPPERS:
        HOLDER_STOPPERS.append(stopper)


def _require_platform_admin(actor: User) -> None:
    if not may_manage_gpus(actor):
        raise PermissionDenied(_("Only platform admins may assign GPUs, set GPU quotas or change nodes."))


def _department(department_id: int) -> Department:
    dept = Department.objects.filter(pk=department_id).first()
    if dept is None:
        raise InvalidInput(_("Department %(id)s does not exist.") % {"id": department_id}, code="invalid_department")
    return dept


def _lock_units(unit_ids: Iterable[int]) -> list[GpuUnit]:
    ids = sorted(set(unit_ids))
    if not ids:
        raise InvalidInput(_("Choose at least one GPU unit."), code="no_units")
    # No select_related: MariaDB would lock the joined rows as well.
    units = list(GpuUnit.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
    absent = sorted(set(ids) - {unit.pk for unit in units})
    if absent:
        raise NotFound(_("GPU units not found: %(ids)s") % {"ids": ", ".join(map(str, absent))})
    return units


def _names(department_ids: Iterable[int | None]) -> dict[int, str]:
    return dict(Department.objects.filter(pk__in={d for d in department_ids if d}).values_list("pk", "name"))


def gib(memory_bytes: int | None) -> str:
    value = round((memory_bytes or 0) / GIB, 1)
    return f"{value:g}"


def usage(department_id: int) -> tuple[int, int]:
    """(units, bytes of GPU memory) in a department's pool, whatever the units' presence."""
    agg = GpuUnit.objects.filter(department_id=department_id).aggregate(n=Count("pk"), memory=Sum("memory_total"))
    return agg["n"], agg["memory"] or 0


def _check_quota(dept: Department, adding: list[GpuUnit]) -> None:
    """Refuse when the pool would exceed its quota; call with the quota row locked (or absent)."""
    quota = GpuQuota.objects.select_for_update().filter(department=dept).first()
    if quota is None:
        return
    used_units, used_bytes = usage(dept.pk)
    add_units, add_bytes = len(adding), sum(unit.memory_total or 0 for unit in adding)
    over_units = quota.max_units is not None and used_units + add_units > quota.max_units
    over_memory = quota.max_memory_gib is not None and used_bytes + add_bytes > quota.max_memory_gib * GIB
    if not (over_units or over_memory):
        return
    unlimited = _("unlimited")
    values = {
        "name": dept.name,
        "max_units": unlimited if quota.max_units is None else quota.max_units,
        "max_memory": unlimited if quota.max_memory_gib is None else quota.max_memory_gib,
        "units": used_units,
        "memory": gib(used_bytes),
        "add_units": add_units,
        "add_memory": gib(add_bytes),
    }
    message = _(
        "Department %(name)s GPU quota: %(max_units)s units / %(max_memory)s GiB; in use %(units)s units / "
        "%(memory)s GiB; this request adds %(add_units)s units / %(add_memory)s GiB."
    )
    raise QuotaExceeded(message % values, details=values)


def _check_holders(actor: User, units: list[GpuUnit], force: bool) -> None:
    claims = list(UnitClaim.objects.select_for_update().filter(unit__in=units).order_by("pk"))
    if not claims:
        return
    if not force:
        held = ", ".join(f"{claim.unit_id} (deployment {claim.deployment_id})" for claim in claims)
        raise Conflict(
            _("Units held by running deployments: %(held)s. Stop them first or force.") % {"held": held},
            code="unit_in_use",
            details={"claims": [{"unit": c.unit_id, "deployment": c.deployment_id} for c in claims]},
        )
    stop_holders(actor, claims)


def stop_holders(actor: User, claims: list[UnitClaim]) -> None:
    """Forced release: stop whatever holds the units (the registered stoppers), then drop the claims."""
    for stopper in HOLDER_STOPPERS:
        stopper(actor, claims)
    for claim in claims:
        audit.record(
            "gpu_unit.claim_revoke",
            actor=actor,
            target=claim.unit,
            after={"unit": claim.unit_id, "deployment": claim.deployment_id},
        )
    UnitClaim.objects.filter(pk__in=[claim.pk for claim in claims]).delete()


def _apply(actor: User, action: str, units: list[GpuUnit], dept: Department | None) -> list[GpuUnit]:
    now = timezone.now()
    befores = [audit_snapshot(unit) for unit in units]
    old_departments = [unit.department_id for unit in units]
    for unit in units:
        unit.department, unit.assigned_at = dept, (now if dept is not None else None)
        if unit.flag == UnitFlag.MISSING_ASSIGNED:
            unit.flag = UnitFlag.NONE  # the admin has dealt with it
    GpuUnit.objects.bulk_update(units, ["department", "assigned_at", "flag"])
    for unit, before, old in zip(units, befores, old_departments, strict=True):
        department_id = dept.pk if dept is not None else old
        audit.record(
            action, actor=actor, target=unit, department_id=department_id, before=before, after=audit_snapshot(unit)
        )
    return units


@transaction.atomic
def assign_units(actor: User, unit_ids: Iterable[int], department_id: int) -> list[GpuUnit]:
    """Put free, present units into a department's pool, within its quota; all or nothing."""
    _require_platform_admin(actor)
    dept = _department(department_id)
    units = _lock_units(unit_ids)
    taken = [unit for unit in units if unit.department_id is not None]
    if taken:
        names = _names(unit.department_id for unit in taken)
        listed = ", ".join(f"{unit.pk} ({names.get(unit.department_id or 0, '?')})" for unit in taken)
        raise Conflict(_("Units already in a pool: %(units)s. Move them instead.") % {"units": listed}, code="assigned")
    missing = [str(unit.pk) for unit in units if unit.state != PresenceState.PRESENT]
    if missing:
        raise Conflict(_("Units missing from their node: %(units)s.") % {"units": ", ".join(missing)}, code="missing")
    _check_quota(dept, units)
    return _apply(actor, "gpu_unit.assign", units, dept)


@transaction.atomic
def release_units(actor: User, unit_ids: Iterable[int], *, force: bool = False) -> list[GpuUnit]:
    """Take units out of their pools. Refused while a deployment holds one, unless ``force``:
    forcing stops the holders first (see :func:`stop_holders`)."""
    _require_platform_admin(actor)
    units = _lock_units(unit_ids)
    free = [str(unit.pk) for unit in units if unit.department_id is None]
    if free:
        raise Conflict(_("Units not in any pool: %(units)s.") % {"units": ", ".join(free)}, code="not_assigned")
    _check_holders(actor, units, force)
    return _apply(actor, "gpu_unit.release", units, None)


@transaction.atomic
def move_units(actor: User, unit_ids: Iterable[int], department_id: int, *, force: bool = False) -> list[GpuUnit]:
    """Move pooled units to another department's pool, within its quota; holders as for release."""
    _require_platform_admin(actor)
    dept = _department(department_id)
    units = _lock_units(unit_ids)
    wrong = [str(unit.pk) for unit in units if unit.department_id in (None, dept.pk)]
    if wrong:
        raise Conflict(
            _("Units not in another department's pool: %(units)s.") % {"units": ", ".join(wrong)}, code="not_movable"
        )
    _check_holders(actor, units, force)
    _check_quota(dept, units)
    return _apply(actor, "gpu_unit.move", units, dept)


@transaction.atomic
def set_quota(
    actor: User,
    department_id: int,
    *,
    max_units: int | None,
    max_memory_gib: int | None,
    max_containers: int | None = None,
) -> GpuQuota:
    """Set (or with None, lift) a department's GPU and container limits; a quota below current use
    blocks new units and containers only. A null ``max_containers`` means the configured default."""
    _require_platform_admin(actor)
    dept = _department(department_id)
    quota, created = GpuQuota.objects.select_for_update().get_or_create(department=dept)
    before = None if created else audit_snapshot(quota)
    quota.max_units, quota.max_memory_gib, quota.max_containers = max_units, max_memory_gib, max_containers
    quota.save()
    audit.record(
        "gpu_quota.set", actor=actor, target=quota, department_id=dept.pk, before=before, after=audit_snapshot(quota)
    )
    return quota


@transaction.atomic
def set_maintenance(actor: User, node_id: int, *, enabled: bool, reason: str = "") -> Node:
    """Put a node in maintenance (no new placements) or take it out: ready if its heartbeat is fresh."""
    _require_platform_admin(actor)
    node = Node.objects.select_for_update().filter(pk=node_id).first()
    if node is None:
        raise NotFound(_("Node not found."))
    if not enabled and node.state != NodeState.MAINTENANCE:
        raise Conflict(_("Node %(name)s is not in maintenance.") % {"name": node.name}, code="not_in_maintenance")
    before = audit_snapshot(node)
    if enabled:
        node.state, node.maintenance_reason = NodeState.MAINTENANCE, reason[:255]
    else:
        node.state = NodeState.READY if is_fresh(node) else NodeState.UNREACHABLE
        node.maintenance_reason = ""
    node.save(update_fields=["state", "maintenance_reason"])
    action = "node.maintenance_on" if enabled else "node.maintenance_off"
    audit.record(action, actor=actor, target=node, before=before, after={**audit_snapshot(node), "reason": reason})
    return node


def pool_summary(user: User) -> dict[str, Any]:
    """Free/total units for everyone; per-pool use and quota for the departments ``user`` may see."""
    present = GpuUnit.objects.filter(state=PresenceState.PRESENT)
    total = present.aggregate(units=Count("pk"), memory=Sum("memory_total"))
    free = present.filter(department__isnull=True).aggregate(units=Count("pk"), memory=Sum("memory_total"))
    departments = (
        Department.objects.restrict(user, VIEW)
        .select_related("gpu_quota")
        .annotate(units=Count("gpu_units"), memory=Sum("gpu_units__memory_total"))
    )
    return {
        "total": {"units": total["units"], "memory_gib": round((total["memory"] or 0) / GIB, 1)},
        "free": {"units": free["units"], "memory_gib": round((free["memory"] or 0) / GIB, 1)},
        "pools": [_pool(dept) for dept in departments],
    }


def _pool(dept: Any) -> dict[str, Any]:
    quota = getattr(dept, "gpu_quota", None)
    return {
        "department": dept.pk,
        "department_name": dept.name,
        "units": dept.units,
        "memory_gib": round((dept.memory or 0) / GIB, 1),
        "quota_units": quota.max_units if quota else None,
        "quota_memory_gib": quota.max_memory_gib if quota else None,
    }

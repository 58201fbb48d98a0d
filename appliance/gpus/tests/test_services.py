"""Assigning units to pools, quotas, release and move, and what a running deployment's claim blocks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from appliance.audit.models import AuditRecord
from appliance.core.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied, QuotaExceeded
from appliance.gpus import services
from appliance.gpus.choices import UnitFlag
from appliance.gpus.models import GpuQuota, GpuUnit, UnitClaim

from .conftest import MakeNode, units_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def units(make_node: MakeNode) -> list[GpuUnit]:
    return units_of(make_node("gpu-01", "4x H100 80GB"))


@pytest.fixture
def stopped() -> Iterator[list[tuple[str, list[int]]]]:
    calls: list[tuple[str, list[int]]] = []

    def stopper(actor: Any, claims: list[UnitClaim]) -> None:
        calls.append((actor.username, [claim.deployment_id for claim in claims]))

    services.register_holder_stopper(stopper)
    yield calls
    services.HOLDER_STOPPERS.remove(stopper)


def _pool(unit_ids: list[int]) -> list[int | None]:
    return [GpuUnit.objects.get(pk=pk).department_id for pk in unit_ids]


def test_assign_puts_units_in_the_pool_with_audit(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    ids = [units[0].pk, units[1].pk]
    services.assign_units(personas["root"], ids, departments["eng"].pk)

    assert _pool(ids) == [departments["eng"].pk] * 2
    recs = AuditRecord.objects.filter(action="gpu_unit.assign")
    assert recs.count() == 2
    rec = recs.first()
    assert rec is not None and rec.before is not None and rec.after is not None
    assert rec.department_id == departments["eng"].pk and rec.after["simulated"] is True
    assert (rec.before["department"], rec.after["department"]) == (None, departments["eng"].pk)


def test_assign_is_all_or_nothing(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    services.assign_units(personas["root"], [units[1].pk], departments["fin"].pk)

    with pytest.raises(Conflict, match="财务部"):
        services.assign_units(personas["root"], [units[0].pk, units[1].pk], departments["eng"].pk)
    assert _pool([units[0].pk, units[1].pk]) == [None, departments["fin"].pk]


def test_assign_refuses_unknown_and_missing_units(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    with pytest.raises(NotFound):
        services.assign_units(personas["root"], [units[0].pk, 10**9], departments["eng"].pk)
    with pytest.raises(InvalidInput):
        services.assign_units(personas["root"], [units[0].pk], 10**9)
    GpuUnit.objects.filter(pk=units[0].pk).update(state="missing")
    with pytest.raises(Conflict):
        services.assign_units(personas["root"], [units[0].pk], departments["eng"].pk)


@pytest.mark.parametrize("who", ["alice", "bob", "charlie", "dave", "eve"])
def test_only_platform_admins_assign(personas: dict, departments: dict, units: list[GpuUnit], who: str) -> None:
    with pytest.raises(PermissionDenied):
        services.assign_units(personas[who], [units[0].pk], departments["eng"].pk)
    with pytest.raises(PermissionDenied):
        services.set_quota(personas[who], departments["eng"].pk, max_units=9, max_memory_gib=None)
    assert _pool([units[0].pk]) == [None]


def test_quota_error_names_the_quota_and_current_use(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    services.set_quota(personas["root"], departments["eng"].pk, max_units=2, max_memory_gib=160)
    services.assign_units(personas["root"], [units[0].pk, units[1].pk], departments["eng"].pk)

    with pytest.raises(QuotaExceeded) as caught:
        services.assign_units(personas["root"], [units[2].pk], departments["eng"].pk)

    message = caught.value.message
    assert "研发部" in message
    assert "2" in message and "160" in message and "80" in message
    assert caught.value.details == {
        "name": "研发部",
        "max_units": 2,
        "max_memory": 160,
        "units": 2,
        "memory": "160",
        "add_units": 1,
        "add_memory": "80",
    }
    assert _pool([units[2].pk]) == [None]


def test_memory_quota_alone_can_refuse(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    services.set_quota(personas["root"], departments["eng"].pk, max_units=None, max_memory_gib=100)
    services.assign_units(personas["root"], [units[0].pk], departments["eng"].pk)
    with pytest.raises(QuotaExceeded):
        services.assign_units(personas["root"], [units[1].pk], departments["eng"].pk)


def test_set_quota_is_audited_with_before_and_after(personas: dict, departments: dict) -> None:
    services.set_quota(personas["root"], departments["eng"].pk, max_units=4, max_memory_gib=None)
    services.set_quota(personas["root"], departments["eng"].pk, max_units=8, max_memory_gib=640)

    assert GpuQuota.objects.get().max_units == 8
    last = AuditRecord.objects.filter(action="gpu_quota.set").order_by("-seq").first()
    assert last is not None and last.before is not None and last.after is not None
    assert (last.before["max_units"], last.after["max_units"], last.after["max_memory_gib"]) == (4, 8, 640)


def test_release_and_move(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    root, ids = personas["root"], [units[0].pk, units[1].pk]
    services.assign_units(root, ids, departments["eng"].pk)

    services.move_units(root, ids, departments["fin"].pk)
    assert _pool(ids) == [departments["fin"].pk] * 2
    with pytest.raises(Conflict):
        services.move_units(root, ids, departments["fin"].pk)  # already there

    services.release_units(root, ids)
    assert _pool(ids) == [None, None]
    with pytest.raises(Conflict):
        services.release_units(root, ids)  # in no pool
    assert list(AuditRecord.objects.order_by("seq").values_list("action", flat=True))[-6:] == [
        "gpu_unit.assign",
        "gpu_unit.assign",
        "gpu_unit.move",
        "gpu_unit.move",
        "gpu_unit.release",
        "gpu_unit.release",
    ]


def test_move_respects_the_target_quota(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    services.assign_units(personas["root"], [units[0].pk], departments["eng"].pk)
    services.set_quota(personas["root"], departments["fin"].pk, max_units=0, max_memory_gib=None)
    with pytest.raises(QuotaExceeded):
        services.move_units(personas["root"], [units[0].pk], departments["fin"].pk)
    assert _pool([units[0].pk]) == [departments["eng"].pk]


def test_release_of_a_held_unit_is_refused_unless_forced(
    personas: dict, departments: dict, units: list[GpuUnit], stopped: list
) -> None:
    root = personas["root"]
    services.assign_units(root, [units[0].pk], departments["eng"].pk)
    UnitClaim.objects.create(unit=units[0], deployment_id=42)

    with pytest.raises(Conflict) as caught:
        services.release_units(root, [units[0].pk])
    assert caught.value.code == "unit_in_use" and "42" in caught.value.message
    assert stopped == [] and UnitClaim.objects.exists()

    services.release_units(root, [units[0].pk], force=True)

    assert stopped == [("root", [42])]  # the hook issue 5 implements ran before the claim went
    assert not UnitClaim.objects.exists() and _pool([units[0].pk]) == [None]
    assert AuditRecord.objects.filter(action="gpu_unit.claim_revoke").count() == 1


def test_move_of_a_held_unit_is_refused_unless_forced(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    services.assign_units(personas["root"], [units[0].pk], departments["eng"].pk)
    UnitClaim.objects.create(unit=units[0], deployment_id=1)
    with pytest.raises(Conflict):
        services.move_units(personas["root"], [units[0].pk], departments["fin"].pk)
    services.move_units(personas["root"], [units[0].pk], departments["fin"].pk, force=True)
    assert _pool([units[0].pk]) == [departments["fin"].pk]


def test_release_clears_the_missing_flag(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    services.assign_units(personas["root"], [units[0].pk], departments["eng"].pk)
    GpuUnit.objects.filter(pk=units[0].pk).update(state="missing", flag=UnitFlag.MISSING_ASSIGNED)
    [unit] = services.release_units(personas["root"], [units[0].pk])
    assert unit.flag == UnitFlag.NONE


def test_pool_summary_shows_free_total_and_only_visible_pools(
    personas: dict, departments: dict, units: list[GpuUnit]
) -> None:
    services.assign_units(personas["root"], [units[0].pk], departments["eng"].pk)
    services.assign_units(personas["root"], [units[1].pk], departments["fin"].pk)
    services.set_quota(personas["root"], departments["eng"].pk, max_units=3, max_memory_gib=None)

    summary = services.pool_summary(personas["bob"])

    assert summary["total"] == {"units": 4, "memory_gib": 320.0}
    assert summary["free"] == {"units": 2, "memory_gib": 160.0}
    assert summary["pools"] == [
        {
            "department": departments["eng"].pk,
            "department_name": "研发部",
            "units": 1,
            "memory_gib": 80.0,
            "quota_units": 3,
            "quota_memory_gib": None,
        }
    ]
    assert len(services.pool_summary(personas["root"])["pools"]) == 3


def test_a_department_holding_units_cannot_be_deleted(personas: dict, units: list[GpuUnit]) -> None:
    from appliance.accounts.services import delete_department
    from conftest import make_department

    legal = make_department("legal", "法务部")
    services.assign_units(personas["root"], [units[0].pk], legal.pk)
    with pytest.raises(Conflict, match="GPU units"):
        delete_department(personas["root"], legal.pk)
    assert GpuUnit.objects.get(pk=units[0].pk).department_id == legal.pk

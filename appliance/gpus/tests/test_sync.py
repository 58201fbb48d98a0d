"""Inventories reach the database through apply_inventory: simulated and NVML alike."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.audit.models import AuditRecord
from appliance.audit.services import verify_chain
from appliance.gpus import nvml
from appliance.gpus.choices import PresenceState, Resolution, UnitFlag, UnitKind
from appliance.gpus.models import Gpu, GpuMetric, GpuUnit, Node, UnitClaim
from appliance.gpus.simulated import collect_simulated
from appliance.gpus.sync import apply_inventory, claim_collection

from .conftest import MakeNode, units_of
from .fake_nvml import H100, H100_MIG, install, load_fixture

pytestmark = pytest.mark.django_db


def test_simulated_inventory_creates_gpus_units_and_a_sample(make_node: MakeNode) -> None:
    node = make_node("gpu-01", "2x RTX 4090 24GB")

    gpus = list(Gpu.objects.filter(node=node).order_by("index"))
    assert [(g.index, g.name, g.simulated, g.state) for g in gpus] == [
        (0, "NVIDIA RTX 4090 24GB", True, PresenceState.PRESENT),
        (1, "NVIDIA RTX 4090 24GB", True, PresenceState.PRESENT),
    ]
    assert [(u.kind, u.uuid, u.memory_total) for u in units_of(node)] == [
        (UnitKind.GPU, gpus[0].uuid, 24 * 1024**3),
        (UnitKind.GPU, gpus[1].uuid, 24 * 1024**3),
    ]
    assert node.simulated and node.driver_version == "580.159.04" and node.inventory_error == ""
    assert GpuMetric.objects.filter(resolution=Resolution.RAW).count() == 2


def test_audit_after_json_marks_simulated(make_node: MakeNode) -> None:
    make_node()
    discovered = AuditRecord.objects.filter(action__in=["gpu.discover", "gpu_unit.discover"])
    assert discovered.count() == 4
    assert all((rec.after or {})["simulated"] is True for rec in discovered)
    assert all(rec.actor_name.startswith("system:") for rec in discovered)
    assert verify_chain().ok


def test_reapplying_an_inventory_changes_nothing(make_node: MakeNode) -> None:
    node = make_node()
    inventory = collect_simulated("2x RTX 4090 24GB", node.name)
    before = AuditRecord.objects.count()

    first = apply_inventory(node.pk, inventory)
    second = apply_inventory(node.pk, inventory)

    assert first.events == [] and second.events == []
    assert AuditRecord.objects.count() == before
    assert Gpu.objects.count() == 2 and GpuUnit.objects.count() == 2
    assert GpuMetric.objects.filter(at=inventory.collected_at).count() == 2  # the same instant is stored once


def test_vanished_gpu_is_missing_not_deleted_and_its_assignment_flagged(make_node: MakeNode, departments: Any) -> None:
    node = make_node("gpu-01", "2x RTX 4090 24GB")
    held, pooled = units_of(node)
    GpuUnit.objects.filter(pk__in=[held.pk, pooled.pk]).update(department=departments["eng"])
    UnitClaim.objects.create(unit=held, deployment_id=7)

    result = apply_inventory(node.pk, collect_simulated("1x RTX 4090 24GB; 1x RTX 4090 24GB", "other"))

    assert (
        sorted(result.actions())
        == ["gpu.discover"] * 2 + ["gpu.missing"] * 2 + ["gpu_unit.discover"] * 2 + ["gpu_unit.missing"] * 2
    )
    held.refresh_from_db()
    pooled.refresh_from_db()
    assert (held.state, held.flag) == (PresenceState.MISSING, UnitFlag.MISSING_HELD)
    assert (pooled.state, pooled.flag) == (PresenceState.MISSING, UnitFlag.MISSING_ASSIGNED)
    assert held.department_id == departments["eng"].pk  # the pool keeps it; an admin decides
    assert Gpu.objects.filter(state=PresenceState.MISSING).count() == 2


def test_returning_gpu_is_present_again_and_the_flag_cleared(make_node: MakeNode, departments: Any) -> None:
    node = make_node("gpu-01", "1x RTX 4090 24GB")
    [unit] = units_of(node)
    GpuUnit.objects.filter(pk=unit.pk).update(department=departments["eng"])
    apply_inventory(node.pk, collect_simulated("1x RTX 4090 24GB", "elsewhere"))

    result = apply_inventory(node.pk, collect_simulated("1x RTX 4090 24GB", "gpu-01"))

    unit.refresh_from_db()
    assert (unit.state, unit.flag, unit.missing_since) == (PresenceState.PRESENT, UnitFlag.NONE, None)
    assert "gpu_unit.return" in result.actions() and "gpu.return" in result.actions()


def test_switching_mig_on_swaps_the_whole_gpu_unit_for_slices(make_node: MakeNode) -> None:
    node = make_node("gpu-01", "1x H100 80GB")
    [whole] = units_of(node)

    apply_inventory(node.pk, collect_simulated("1x H100 80GB mig:3g.40gb,2g.20gb", "gpu-01"))

    whole.refresh_from_db()
    assert whole.state == PresenceState.MISSING
    slices = GpuUnit.objects.filter(gpu__node=node, kind=UnitKind.MIG).order_by("gi_id")
    assert [(s.profile, s.memory_total, s.state) for s in slices] == [
        ("3g.40gb", 40 * 1024**3, PresenceState.PRESENT),
        ("2g.20gb", 20 * 1024**3, PresenceState.PRESENT),
    ]
    assert Gpu.objects.get(node=node).mig_mode_current is True

    apply_inventory(node.pk, collect_simulated("1x H100 80GB", "gpu-01"))
    whole.refresh_from_db()
    assert whole.state == PresenceState.PRESENT
    assert set(GpuUnit.objects.filter(kind=UnitKind.MIG).values_list("state", flat=True)) == {PresenceState.MISSING}


def test_nvml_inventory_takes_the_same_path(make_node: MakeNode, monkeypatch: pytest.MonkeyPatch) -> None:
    node = make_node("gpu-01", "1x H100 80GB")
    install(monkeypatch, load_fixture(H100_MIG))

    apply_inventory(node.pk, nvml.collect())

    node.refresh_from_db()
    real = Gpu.objects.get(simulated=False)
    assert (real.name, real.mig_mode_current, node.simulated) == ("NVIDIA H100 80GB HBM3", True, False)
    assert [u.profile for u in GpuUnit.objects.filter(gpu=real, kind=UnitKind.MIG)] == ["3g.40gb", "3g.40gb"]
    assert GpuUnit.objects.filter(simulated=True).get().state == PresenceState.MISSING


def test_nvml_error_is_stored_as_data_on_the_node(make_node: MakeNode, monkeypatch: pytest.MonkeyPatch) -> None:
    node = make_node("gpu-01", "1x H100 80GB")
    fake = install(monkeypatch, load_fixture(H100))
    fake.fail("nvmlInitWithFlags", 9)  # NVML_ERROR_DRIVER_NOT_LOADED

    result = apply_inventory(node.pk, nvml.collect())

    node.refresh_from_db()
    assert node.inventory_error == "no NVIDIA GPU / NVML error: Driver Not Loaded"
    assert "node.inventory_error" in result.actions()
    assert Gpu.objects.get().state == PresenceState.MISSING

    install(monkeypatch, load_fixture(H100))
    assert "node.inventory_ok" in apply_inventory(node.pk, nvml.collect()).actions()
    node.refresh_from_db()
    assert node.inventory_error == "" and node.driver_version == "580.159.04"


def test_collection_claim_lets_one_run_through(make_node: MakeNode) -> None:
    node = make_node()
    assert claim_collection(node.pk) is True
    assert claim_collection(node.pk) is False
    Node.objects.filter(pk=node.pk).update(inventory_claimed_at=None)
    assert claim_collection(node.pk) is True

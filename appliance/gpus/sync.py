"""Store one node's inventory: upsert GPUs and units by UUID, mark vanished ones missing, keep samples.

Simulated and real inventories take exactly this path; only the rows' ``simulated`` flag differs.

Lock order, shared with the assignment services so that neither can deadlock the other: the node
row, then the node's unit rows in primary-key order, then (last, by writing audit records only
after every other change) the audit chain head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from appliance.audit import services as audit
from appliance.core.exceptions import NotFound
from appliance.gpus import metrics
from appliance.gpus.choices import PresenceState, UnitFlag, UnitKind
from appliance.gpus.inventory import GpuReading, NodeInventory
from appliance.gpus.models import Gpu, GpuUnit, Node, UnitClaim, audit_snapshot

_GPU_READINGS = (
    "index",
    "name",
    "pci_bus_id",
    "memory_total",
    "memory_used",
    "memory_free",
    "memory_reserved",
    "util_gpu",
    "util_memory",
    "temperature_c",
    "power_draw_w",
    "power_limit_w",
    "ecc_uncorrected",
    "ecc_corrected",
    "compute_capability",
    "mig_capable",
    "mig_mode_current",
    "mig_mode_pending",
    "simulated",
)
_GPU_FIELDS = [*_GPU_READINGS, "node", "processes", "state", "last_seen", "missing_since"]
_UNIT_FIELDS = ["gpu", "kind", "profile", "memory_total", "memory_used", "gi_id", "ci_id", "simulated"]
_UNIT_UPDATE = [*_UNIT_FIELDS, "state", "flag", "last_seen", "missing_since"]


@dataclass
class SyncResult:
    gpus: int = 0
    units: int = 0
    # (action, target, before) triples, audited after every row is written (see the lock order above).
    events: list[tuple[str, Any, dict[str, Any] | None]] = field(default_factory=list)

    def actions(self) -> list[str]:
        return [action for action, _target, _before in self.events]


def claim_collection(node_id: int, now: datetime | None = None) -> bool:
    """Claim node ``node_id`` for one inventory run; False when another run claimed it within half an interval.

    Collections pile up in the node's queue while its worker is busy or down; the conditional
    UPDATE lets the first of them run and the rest exit without reading the GPUs again.
    """
    now = now or timezone.now()
    recent = now - timedelta(seconds=settings.APPLIANCE_INVENTORY_INTERVAL_SECONDS / 2)
    unclaimed = Q(inventory_claimed_at__isnull=True) | Q(inventory_claimed_at__lt=recent)
    return bool(Node.objects.filter(unclaimed, pk=node_id).update(inventory_claimed_at=now))


def apply_inventory(node_id: int, inventory: NodeInventory) -> SyncResult:
    """Reconcile the database with one inventory of node ``node_id``; idempotent for the same inventory."""
    now = timezone.now()
    result = SyncResult()
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(pk=node_id).first()
        if node is None:
            raise NotFound(f"Node {node_id} does not exist.")
        _update_node(node, inventory, now, result)
        gpus = _upsert_gpus(node, inventory.gpus, now, result)
        _mark_missing_gpus(node, set(gpus), now, result)
        _sync_units(node, inventory.gpus, gpus, now, result)
        metrics.record_samples(list(gpus.values()), inventory.collected_at)
        for action, target, before in result.events:
            audit.record(action, actor=None, target=target, before=before, after=audit_snapshot(target))
    result.gpus, result.units = len(gpus), sum(len(_unit_specs(reading)) for reading in inventory.gpus)
    return result


def _update_node(node: Node, inventory: NodeInventory, now: datetime, result: SyncResult) -> None:
    error = inventory.error or ""
    if error != node.inventory_error:
        result.events.append(("node.inventory_error" if error else "node.inventory_ok", node, None))
    node.inventory_error = error
    node.driver_version = inventory.driver_version or ""
    node.cuda_version = inventory.cuda_driver_version or ""
    node.nvml_version = inventory.nvml_version or ""
    node.simulated = inventory.simulated
    node.inventory_at = now
    node.save(
        update_fields=[
            "inventory_error",
            "driver_version",
            "cuda_version",
            "nvml_version",
            "simulated",
            "inventory_at",
        ]
    )


def _upsert_gpus(node: Node, readings: list[GpuReading], now: datetime, result: SyncResult) -> dict[str, Gpu]:
    existing = {gpu.uuid: gpu for gpu in Gpu.objects.filter(uuid__in=[r.uuid for r in readings])}
    gpus: dict[str, Gpu] = {}
    for reading in readings:
        gpu = existing.get(reading.uuid)
        if gpu is None:
            gpu = Gpu(uuid=reading.uuid, node=node, first_seen=now)
            result.events.append(("gpu.discover", gpu, None))
        elif gpu.state == PresenceState.MISSING or gpu.node_id != node.pk:
            result.events.append(("gpu.return", gpu, audit_snapshot(gpu)))
        for name in _GPU_READINGS:
            setattr(gpu, name, getattr(reading, name))
        gpu.compute_capability = reading.compute_capability or ""
        gpu.name, gpu.pci_bus_id = reading.name or "", reading.pci_bus_id or ""
        gpu.processes = [{"pid": p.pid, "used_memory": p.used_memory} for p in reading.processes]
        gpu.node, gpu.state, gpu.last_seen, gpu.missing_since = node, PresenceState.PRESENT, now, None
        gpus[reading.uuid] = gpu
    Gpu.objects.bulk_update([g for g in gpus.values() if g.pk], _GPU_FIELDS)
    for gpu in gpus.values():
        if gpu.pk is None:
            gpu.save()
    return gpus


def _mark_missing_gpus(node: Node, seen: set[str], now: datetime, result: SyncResult) -> None:
    vanished = list(node.gpus.filter(state=PresenceState.PRESENT).exclude(uuid__in=seen))
    for gpu in vanished:
        result.events.append(("gpu.missing", gpu, audit_snapshot(gpu)))
        gpu.state, gpu.missing_since = PresenceState.MISSING, now
    Gpu.objects.bulk_update(vanished, ["state", "missing_since"])


def _unit_specs(reading: GpuReading) -> list[dict[str, Any]]:
    """The units a GPU offers now: its MIG slices with MIG on, else the whole GPU."""
    if reading.mig_mode_current:
        return [
            {
                "uuid": mig.uuid,
                "kind": UnitKind.MIG,
                "profile": mig.profile or "",
                "memory_total": mig.memory_total,
                "memory_used": mig.memory_used,
                "gi_id": mig.gi_id,
                "ci_id": mig.ci_id,
            }
            for mig in reading.mig_devices
        ]
    return [
        {
            "uuid": reading.uuid,
            "kind": UnitKind.GPU,
            "profile": "",
            "memory_total": reading.memory_total,
            "memory_used": reading.memory_used,
            "gi_id": None,
            "ci_id": None,
        }
    ]


def _sync_units(
    node: Node, readings: list[GpuReading], gpus: dict[str, Gpu], now: datetime, result: SyncResult
) -> None:
    specs = {spec["uuid"]: (gpus[r.uuid], spec) for r in readings for spec in _unit_specs(r)}
    gpu_ids = set(node.gpus.values_list("pk", flat=True)) | {gpu.pk for gpu in gpus.values()}
    locked = GpuUnit.objects.select_for_update().filter(gpu_id__in=gpu_ids).order_by("pk")
    existing = {unit.uuid: unit for unit in locked}
    # A unit whose GPU moved here from another node is not among this node's rows yet.
    existing.update({u.uuid: u for u in GpuUnit.objects.select_for_update().filter(uuid__in=specs).order_by("pk")})
    changed: list[GpuUnit] = []
    for uuid, (gpu, spec) in specs.items():
        unit = existing.get(uuid)
        if unit is None:
            unit = GpuUnit(gpu=gpu, first_seen=now, **spec, simulated=gpu.simulated, last_seen=now)
            unit.save()
            result.events.append(("gpu_unit.discover", unit, None))
            continue
        if unit.state == PresenceState.MISSING:
            result.events.append(("gpu_unit.return", unit, audit_snapshot(unit)))
        for name, value in {**spec, "gpu": gpu, "simulated": gpu.simulated}.items():
            setattr(unit, name, value)
        unit.state, unit.flag, unit.last_seen, unit.missing_since = PresenceState.PRESENT, UnitFlag.NONE, now, None
        changed.append(unit)
    changed.extend(_mark_missing_units([u for u in existing.values() if u.uuid not in specs], now, result))
    GpuUnit.objects.bulk_update(changed, _UNIT_UPDATE)


def _mark_missing_units(candidates: list[GpuUnit], now: datetime, result: SyncResult) -> list[GpuUnit]:
    vanished = [unit for unit in candidates if unit.state == PresenceState.PRESENT]
    held = set(UnitClaim.objects.filter(unit__in=vanished).values_list("unit_id", flat=True)) if vanished else set()
    for unit in vanished:
        result.events.append(("gpu_unit.missing", unit, audit_snapshot(unit)))
        unit.state, unit.missing_since = PresenceState.MISSING, now
        if unit.pk in held:
            unit.flag = UnitFlag.MISSING_HELD
        elif unit.department_id is not None:
            unit.flag = UnitFlag.MISSING_ASSIGNED
    return vanished

"""Choosing nodes, GPU units and host ports for a deployment's instances.

Runs inside the caller's transaction. Units are locked in primary-key order, the same order the
GPU assignment services use, so concurrent placements queue instead of deadlocking; the unit's
one-to-one claim row is the final word on "at most one deployment per unit".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction

from appliance.core.exceptions import Conflict
from appliance.deployments.choices import ACTIVE_STATES, PlacementStrategy
from appliance.deployments.models import Instance, PortLease
from appliance.gpus.choices import NodeState, PresenceState
from appliance.gpus.models import GpuUnit, Node, UnitClaim


@dataclass
class NodePlan:
    node: Node
    units: list[GpuUnit] = field(default_factory=list)


def _free_units(department_id: int, min_memory_gib: float) -> dict[Node, list[GpuUnit]]:
    candidates = list(
        GpuUnit.objects.filter(
            department_id=department_id,
            state=PresenceState.PRESENT,
            claim__isnull=True,
            gpu__node__state=NodeState.READY,
        ).values_list("pk", flat=True)
    )
    # Lock the unit rows alone (a join would lock GPU and node rows too, which heartbeats update).
    locked = {u.pk for u in GpuUnit.objects.select_for_update().filter(pk__in=candidates).order_by("pk")}
    units = (
        GpuUnit.objects.select_related("gpu__node")
        .filter(pk__in=locked, department_id=department_id, claim__isnull=True)
        .order_by("pk")
    )
    by_node: dict[Node, list[GpuUnit]] = defaultdict(list)
    for unit in units:
        if unit.memory_gib + 1e-6 >= min_memory_gib:
            by_node[unit.gpu.node].append(unit)
    return by_node


def _load(node: Node) -> int:
    return Instance.objects.filter(node=node, state__in=ACTIVE_STATES).count()


def _order(candidates: list[tuple[Node, list[GpuUnit]]]) -> list[tuple[Node, list[GpuUnit]]]:
    if settings.APPLIANCE_PLACEMENT == PlacementStrategy.BINPACK:
        return sorted(candidates, key=lambda c: (len(c[1]), c[0].name))
    return sorted(candidates, key=lambda c: (-len(c[1]), c[0].name))


def place(department_id: int, *, nodes: int, gpus_per_node: int, min_memory_gib: float) -> list[NodePlan]:
    """Pick ``nodes`` distinct ready nodes with ``gpus_per_node`` free pool units each, or explain why not."""
    if gpus_per_node == 0:
        ready = list(Node.objects.select_for_update().filter(state=NodeState.READY).order_by("name"))
        if len(ready) < nodes:
            raise Conflict(f"Needs {nodes} ready node(s); {len(ready)} ready.", code="no_capacity")
        ready.sort(key=lambda n: (_load(n), n.name))
        return [NodePlan(node) for node in ready[:nodes]]
    by_node = _free_units(department_id, min_memory_gib)
    fitting = [(node, units) for node, units in by_node.items() if len(units) >= gpus_per_node]
    if len(fitting) < nodes:
        raise Conflict(_explain(by_node, nodes, gpus_per_node, min_memory_gib), code="no_capacity")
    return [NodePlan(node, units[:gpus_per_node]) for node, units in _order(fitting)[:nodes]]


def _explain(by_node: dict[Node, list[GpuUnit]], nodes: int, per_node: int, min_gib: float) -> str:
    free = ", ".join(f"{n.name}: {len(u)}" for n, u in sorted(by_node.items(), key=lambda x: x[0].name)) or "none"
    return (
        f"Nothing fits: needs {nodes} node(s) with {per_node} free GPU unit(s) of ≥ {min_gib:g} GiB each in the "
        f"department's pool on ready nodes; free units per node: {free}."
    )


def claim_units(units: list[GpuUnit], deployment_id: int) -> None:
    for unit in units:
        try:
            with transaction.atomic():
                UnitClaim.objects.create(unit=unit, deployment_id=deployment_id)
        except IntegrityError:
            raise Conflict(f"GPU unit {unit} was taken by another deployment.", code="unit_taken") from None


def lease_port(instance: Instance, exclude: frozenset[int] = frozenset()) -> int:
    low, high = settings.APPLIANCE_PORT_RANGE
    taken = set(PortLease.objects.filter(node=instance.node).values_list("port", flat=True)) | exclude
    for port in range(low, high + 1):
        if port in taken:
            continue
        try:
            with transaction.atomic():
                PortLease.objects.create(node=instance.node, port=port, instance=instance)
        except IntegrityError:  # taken by a concurrent placement since we read the list
            continue
        return port
    raise Conflict(f"No free host port in {low}–{high} on node {instance.node.name}.", code="no_port")


def release(deployment_id: int) -> None:
    """Give back every unit claim and port lease of a deployment."""
    UnitClaim.objects.filter(deployment_id=deployment_id).delete()
    PortLease.objects.filter(instance__deployment_id=deployment_id).delete()

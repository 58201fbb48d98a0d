"""The free GPU units the fit check may use, read from the GPU inventory (detected or simulated).

Free means: the unit is present, its GPU is present, its node is ready and no deployment holds it.
With a department, only the units of that department's pool count (a deployment of the department
draws from its pool); without one, every free unit of the appliance counts, pooled or not.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from appliance.accounts.models import Department
from appliance.catalog.fit import FreeUnit, HostNode
from appliance.gpus.choices import GIB, NodeState, PresenceState, UnitKind
from appliance.gpus.models import GpuUnit, Node


def free_nodes(department: Department | None = None) -> tuple[HostNode, ...]:
    """Ready nodes with their free units; two queries whatever the size of the inventory."""
    units = GpuUnit.objects.filter(
        state=PresenceState.PRESENT,
        gpu__state=PresenceState.PRESENT,
        gpu__node__state=NodeState.READY,
        claim__isnull=True,
    )
    if department is not None:
        units = units.filter(department=department)
    rows = units.values_list("gpu__node__name", "gpu__name", "kind", "profile", "memory_total", "gpu__memory_total")
    per_node: dict[str, list[FreeUnit]] = {}
    for node_name, gpu_name, kind, profile, memory, gpu_memory in rows:
        name = f"{gpu_name} MIG {profile}" if kind == UnitKind.MIG else gpu_name
        per_node.setdefault(node_name, []).append(FreeUnit(name or "GPU", (memory or gpu_memory or 0) / GIB))
    ready = Node.objects.filter(state=NodeState.READY).values_list("name", "ram_bytes")
    return tuple(HostNode(name, ram / GIB if ram else None, tuple(per_node.get(name, ()))) for name, ram in ready)


def scope_label(department: Department | None) -> str:
    """How a fit answer names the units it looked at."""
    if department is None:
        return _("the appliance")
    return _("the GPU pool of %(department)s") % {"department": department.name}

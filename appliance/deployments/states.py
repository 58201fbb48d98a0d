"""The deployment state machine: the one place that moves a deployment between states and that schedules
its containers. Services (people's requests) and node code (``lifecycle``, ``ondemand``) both use it.

Launches and stops are queued by task name (see ``appliance.core.tasks``): the tasks' bodies run node code
that calls back into this module.
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from appliance.accounts.models import User
from appliance.audit import services as audit
from appliance.core.exceptions import Conflict
from appliance.core.tasks import queue_on_commit
from appliance.deployments import container_quota, placement
from appliance.deployments.choices import ALLOWED, Role, State
from appliance.deployments.launchspec import LaunchSpec
from appliance.deployments.models import Deployment, Event, Instance, snapshot
from appliance.gpus.choices import node_queue
from appliance.images.catalog import require_image_on

LAUNCH = "deployments.launch_instance"
STOP = "deployments.stop_instance"


def transition(dep: Deployment, to: str, reason: str = "", actor: User | None = None) -> None:
    """Move ``dep`` to state ``to``, storing an event and an audit record. Caller holds the row lock."""
    if to == dep.state:
        return
    if to not in ALLOWED[State(dep.state)]:
        raise Conflict(f"Deployment {dep.name} is {dep.state}; it cannot become {to}.", code="invalid_state")
    before = snapshot(dep)
    Event.objects.create(deployment=dep, from_state=dep.state, to_state=to, reason=reason[:4000])
    dep.state, dep.state_reason, dep.state_changed_at = to, reason[:4000], timezone.now()
    dep.save(update_fields=["state", "state_reason", "state_changed_at", "desired", "restart_count", "next_restart_at"])
    audit.record(
        f"deployment.{to}",
        actor=actor,
        target=dep,
        department_id=dep.department_id,
        before=before,
        after={**snapshot(dep), "reason": reason[:500]},
    )


def schedule(dep: Deployment, spec: LaunchSpec, actor: User | None, reason: str = "scheduled") -> None:
    """Place every replica, take its units and ports, and queue the launches once this commits."""
    if actor is not None:
        # A person asks for containers: they count against the department's limit. The console's
        # own restarts replace containers that were already counted, so they are not refused.
        container_quota.check(dep, dep.replicas * spec.nodes)
    first: list[Instance] = []
    for replica in range(dep.replicas):
        plans = placement.place(
            dep.department_id, nodes=spec.nodes, gpus_per_node=spec.gpus_per_node, min_memory_gib=spec.min_memory_gib
        )
        for rank, plan in enumerate(plans):
            require_image_on(plan.node, dep.image)
            placement.claim_units(plan.units, dep.pk)
            inst = _new_instance(dep, replica, rank, plan, multi_node=spec.nodes > 1)
            if rank == 0:
                first.append(inst)
    where = ", ".join(sorted({i.node.name for i in dep.instances.all()}))
    transition(dep, State.SCHEDULED, f"{reason} on {where}", actor)
    for inst in first:
        queue_on_commit(LAUNCH, inst.pk, queue=node_queue(inst.node.name))


def _new_instance(dep: Deployment, replica: int, rank: int, plan: placement.NodePlan, multi_node: bool) -> Instance:
    role = Role.SINGLE if not multi_node else (Role.RAY_HEAD if rank == 0 else Role.RAY_WORKER)
    inst = Instance.objects.create(
        deployment=dep,
        replica=replica,
        rank=rank,
        role=role,
        node=plan.node,
        container_name=f"pending-{dep.pk}-{replica}-{rank}-{timezone.now().timestamp()}",
        gpu_uuids=[u.uuid for u in plan.units if not u.simulated],
    )
    inst.container_name = f"{settings.CONSOLE_ID}-d{dep.pk}-i{inst.pk}"
    inst.host_port = placement.lease_port(inst) if role != Role.RAY_WORKER else None
    inst.save(update_fields=["container_name", "host_port"])
    return inst


def queue_stops(dep: Deployment) -> None:
    for inst in dep.instances.select_related("node"):
        queue_on_commit(STOP, inst.pk, queue=node_queue(inst.node.name))

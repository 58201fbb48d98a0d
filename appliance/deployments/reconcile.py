"""Containers against rows, on one node. Runs in that node's worker every few seconds.

- A container of ours whose row is gone (or names another console's deployment) is removed.
- A row ``starting``/``running`` whose container exited is failed with its exit code and logs.
- A row ``starting``/``running`` whose container vanished is failed.
- A row stuck ``creating`` past the launch grace (its worker died mid-launch) goes back to
  ``scheduled`` and is launched again; the fixed container name makes that adopt, not duplicate.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from appliance.audit import services as audit
from appliance.core.tasks import task_named
from appliance.deployments import docker_driver, lifecycle
from appliance.deployments.choices import CONTAINER_LABEL_REPLICA, State
from appliance.deployments.models import Deployment, Event, Instance
from appliance.deployments.states import LAUNCH
from appliance.gpus.choices import NodeState, node_queue
from appliance.gpus.models import Node

log = logging.getLogger(__name__)
WATCHED = (State.STARTING, State.RUNNING, State.UNREACHABLE)
CHECK_HEALTH = "deployments.check_health"
RECONCILE_NODE = "deployments.reconcile_node"


def reconcile(node: Node) -> str:
    observed = {o.name: o for o in docker_driver.ours(node.name)}
    rows = {i.container_name: i for i in Instance.objects.filter(node=node).select_related("deployment")}
    orphans = [o for name, o in observed.items() if name not in rows]
    for orphan in orphans:
        _remove_orphan(node, orphan)
    died = 0
    for name, inst in rows.items():
        died += _check_row(inst, observed.get(name))
    requeued = _requeue_stuck_launches(node)
    probed = _restart_lost_health_checks(node, observed)
    return (
        f"{len(observed)} containers, {len(orphans)} orphans removed, {died} failed, {requeued} relaunched, "
        f"{probed} health checks restarted"
    )


def _remove_orphan(node: Node, orphan: docker_driver.Observed) -> None:
    docker_driver.stop_and_remove(orphan.name, settings.APPLIANCE_STOP_GRACE_SECONDS)
    with transaction.atomic():
        audit.record(
            "container.orphan_removed",
            actor=None,
            target_type="docker.container",
            target_label=orphan.name,
            after={
                "node": node.name,
                "container_id": orphan.container_id,
                "status": orphan.status,
                "instance": orphan.labels.get(CONTAINER_LABEL_REPLICA, ""),
            },
        )


def _check_row(inst: Instance, seen: docker_driver.Observed | None) -> int:
    if inst.state not in WATCHED:
        return 0
    if seen is None:
        lifecycle.mark_failed(inst.pk, f"container {inst.container_name} vanished")
        return 1
    if seen.status in ("exited", "dead"):
        lifecycle.mark_failed(
            inst.pk,
            f"container {inst.container_name} died",
            exit_code=seen.exit_code,
            logs=docker_driver.tail(inst.container_name),
        )
        return 1
    return 0


def _restart_lost_health_checks(node: Node, observed: dict[str, docker_driver.Observed]) -> int:
    count = 0
    for inst in Instance.objects.filter(node=node, state=State.STARTING):
        seen = observed.get(inst.container_name)
        if seen is not None and seen.status == "running" and lifecycle.claim_lost_health_check(inst):
            task_named(CHECK_HEALTH).apply_async(args=(inst.pk,), queue=node_queue(node.name))
            count += 1
    return count


def _requeue_stuck_launches(node: Node) -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.APPLIANCE_LAUNCH_GRACE_SECONDS)
    stuck = Instance.objects.filter(node=node, state=State.CREATING, claimed_at__lt=cutoff)
    count = 0
    for inst_id in stuck.values_list("pk", flat=True):
        # Conditional: only one reconciler (or a late original delivery) wins the row back.
        if Instance.objects.filter(pk=inst_id, state=State.CREATING, claimed_at__lt=cutoff).update(
            state=State.SCHEDULED
        ):
            inst = Instance.objects.get(pk=inst_id)
            Event.objects.create(
                deployment_id=inst.deployment_id,
                from_state=State.CREATING,
                to_state=State.CREATING,
                reason=f"launch of {inst.container_name} on {node.name} unfinished after "
                f"{settings.APPLIANCE_LAUNCH_GRACE_SECONDS} s (worker died?); launching again",
            )
            task_named(LAUNCH).apply_async(args=(inst_id,), queue=node_queue(node.name))
            count += 1
    return count


def reconcile_everywhere() -> int:
    """Beat: queue a reconciliation on every node that answers, and restart what is due."""
    names = list(Node.objects.exclude(state=NodeState.UNREACHABLE).values_list("name", flat=True))
    for name in names:
        task_named(RECONCILE_NODE).apply_async(
            args=(name,), queue=node_queue(name), expires=settings.APPLIANCE_RECONCILE_SECONDS
        )
    due = Deployment.objects.filter(state=State.FAILED, next_restart_at__lte=timezone.now())
    for dep_id in due.values_list("pk", flat=True):
        lifecycle.restart_due(dep_id)
    return len(names)

"""GPU inventory and node liveness tasks. Thin: they take ids and call the gpus app's functions.

Queues: ``collect_inventory`` runs on ``node.<name>`` (only that node can read its GPUs); the
periodic ones (reconcile, rollup, prune) run on ``default`` from the beat schedule in settings.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from appliance.gpus import metrics, nodes, sync
from appliance.gpus.choices import Resolution, node_queue
from appliance.gpus.models import Node
from appliance.gpus.simulated import collect_for_settings

log = logging.getLogger(__name__)


@shared_task(name="gpus.collect_inventory", ignore_result=True)
def collect_inventory(node_id: int) -> str:
    """Read this node's GPUs (NVML or the simulated spec) and store them; skipped if a run is recent."""
    name = Node.objects.filter(pk=node_id).values_list("name", flat=True).first()
    if name is None:
        return "no such node"
    if name != settings.NODE_NAME:
        # Only the node itself can read its GPUs; a message routed here by mistake must not overwrite them.
        log.warning("inventory for node %s received on node %s; ignored", name, settings.NODE_NAME)
        return "wrong node"
    if not sync.claim_collection(node_id):
        return "claimed by another run"
    inventory = collect_for_settings(settings.APPLIANCE_SIMULATED_GPUS, name)
    result = sync.apply_inventory(node_id, inventory)
    return f"{result.gpus} GPUs, {result.units} units, {len(result.events)} changes"


def queue_collection(node: Node, *, on_commit: bool = False) -> None:
    """Queue an inventory run on the node's own queue; a run not started within one interval is dropped."""
    queue, expires = node_queue(node.name), settings.APPLIANCE_INVENTORY_INTERVAL_SECONDS
    if on_commit:
        collect_inventory.apply_async_on_commit(args=(node.pk,), queue=queue, expires=expires)  # type: ignore[attr-defined]
    else:
        collect_inventory.apply_async(args=(node.pk,), queue=queue, expires=expires)


@shared_task(name="gpus.reconcile_nodes", ignore_result=True)
def reconcile_nodes() -> list[int]:
    """Mark nodes that missed their heartbeats unreachable."""
    return nodes.reconcile_nodes()


@shared_task(name="gpus.rollup_metrics", ignore_result=True)
def rollup_metrics() -> dict[str, int]:
    return {level: metrics.rollup(level) for level in (Resolution.MINUTE, Resolution.HOUR)}


@shared_task(name="gpus.prune_metrics", ignore_result=True)
def prune_metrics() -> dict[str, int]:
    return metrics.prune()

"""Node liveness: registration at worker start, heartbeats, and the reconciler that notices silence.

These run as the system (no user): registration in the worker's main process, heartbeats from its
agent thread, reconciliation from a beat task. State changes are audited; a heartbeat that changes
nothing writes one UPDATE and no audit record.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from appliance.audit import services as audit
from appliance.gpus.choices import NodeState
from appliance.gpus.hostinfo import HostFacts
from appliance.gpus.models import Node, audit_snapshot


def stale_cutoff(now: datetime | None = None) -> datetime:
    """Heartbeats older than this are missed: the node has been silent for N heartbeat intervals."""
    silence = settings.APPLIANCE_HEARTBEAT_SECONDS * settings.APPLIANCE_NODE_MISSED_HEARTBEATS
    return (now or timezone.now()) - timedelta(seconds=silence)


@transaction.atomic
def register_node(name: str, facts: HostFacts) -> Node:
    """Create or refresh the node ``name``; it is ready unless an admin put it in maintenance."""
    now = timezone.now()
    node, created = Node.objects.select_for_update().get_or_create(name=name)
    before = None if created else {**audit_snapshot(node), **_facts_of(node)}
    for field, value in asdict(facts).items():
        setattr(node, field, value)
    if node.state != NodeState.MAINTENANCE:
        node.state = NodeState.READY
    node.last_heartbeat = now
    if created:
        node.registered_at = now
    node.save()
    after = {**audit_snapshot(node), **_facts_of(node)}
    if before != after:
        audit.record("node.register", actor=None, target=node, before=before, after=after)
    return node


def _facts_of(node: Node) -> dict[str, object]:
    return {field: getattr(node, field) for field in HostFacts.__dataclass_fields__}


def heartbeat(node_id: int) -> bool:
    """Record that the node is alive; an unreachable node becomes ready. False if the node is gone."""
    now = timezone.now()
    with transaction.atomic():
        if not Node.objects.filter(pk=node_id).update(last_heartbeat=now):
            return False
        # Conditional: only the heartbeat that flips the state writes the audit record.
        if Node.objects.filter(pk=node_id, state=NodeState.UNREACHABLE).update(state=NodeState.READY):
            node = Node.objects.get(pk=node_id)
            audit.record(
                "node.ready",
                actor=None,
                target=node,
                before={**audit_snapshot(node), "state": NodeState.UNREACHABLE},
                after=audit_snapshot(node),
            )
    return True


def reconcile_nodes(now: datetime | None = None) -> list[int]:
    """Mark ready nodes that missed their heartbeats unreachable; returns the ids it changed.

    Each node is flipped by its own conditional UPDATE, so a heartbeat landing between the query and
    the update wins (the row no longer matches) and the node stays ready.
    """
    cutoff = stale_cutoff(now)
    changed = []
    candidates = Node.objects.filter(state=NodeState.READY, last_heartbeat__lt=cutoff).values_list("pk", flat=True)
    for node_id in list(candidates):
        with transaction.atomic():
            claimed = Node.objects.filter(pk=node_id, state=NodeState.READY, last_heartbeat__lt=cutoff).update(
                state=NodeState.UNREACHABLE
            )
            if not claimed:
                continue
            node = Node.objects.get(pk=node_id)
            audit.record(
                "node.unreachable",
                actor=None,
                target=node,
                before={**audit_snapshot(node), "state": NodeState.READY},
                after={**audit_snapshot(node), "last_heartbeat": node.last_heartbeat},
            )
            changed.append(node_id)
    return changed


def is_fresh(node: Node, now: datetime | None = None) -> bool:
    return node.last_heartbeat is not None and node.last_heartbeat >= stale_cutoff(now)

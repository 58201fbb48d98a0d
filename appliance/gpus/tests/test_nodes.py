"""Registration, heartbeats, the reconciler and maintenance: every state change audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from appliance.audit.models import AuditRecord
from appliance.core.exceptions import Conflict, PermissionDenied
from appliance.gpus import services
from appliance.gpus.choices import NodeState
from appliance.gpus.hostinfo import collect_host_facts
from appliance.gpus.models import Node
from appliance.gpus.nodes import heartbeat, reconcile_nodes, register_node

from .conftest import FACTS

pytestmark = pytest.mark.django_db


def _age(node: Node, seconds: float) -> None:
    Node.objects.filter(pk=node.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=seconds))


def _actions() -> list[str]:
    return list(AuditRecord.objects.order_by("seq").values_list("action", flat=True))


def test_register_stores_host_facts_and_is_audited_once() -> None:
    node = register_node("gpu-01", FACTS)
    again = register_node("gpu-01", FACTS)

    assert again.pk == node.pk
    assert (node.state, node.cpu_count, node.docker_version) == (NodeState.READY, 96, "unreachable")
    assert _actions() == ["node.register"]  # nothing changed the second time


def test_host_facts_of_this_machine_are_readable() -> None:
    facts = collect_host_facts()
    assert facts.hostname and facts.cpu_count and facts.ram_bytes and facts.disk_bytes and facts.os
    assert facts.docker_version  # a version, or "unreachable"


@override_settings(APPLIANCE_HEARTBEAT_SECONDS=10, APPLIANCE_NODE_MISSED_HEARTBEATS=3)
def test_three_missed_heartbeats_make_a_node_unreachable_and_one_brings_it_back() -> None:
    node = register_node("gpu-01", FACTS)
    _age(node, 29)
    assert reconcile_nodes() == []

    _age(node, 31)
    assert reconcile_nodes() == [node.pk]
    assert reconcile_nodes() == []  # idempotent
    node.refresh_from_db()
    assert node.state == NodeState.UNREACHABLE

    assert heartbeat(node.pk) is True
    node.refresh_from_db()
    assert node.state == NodeState.READY
    assert _actions() == ["node.register", "node.unreachable", "node.ready"]


def test_heartbeat_of_a_ready_node_writes_no_audit_record() -> None:
    node = register_node("gpu-01", FACTS)
    assert heartbeat(node.pk) is True
    assert heartbeat(10**9) is False
    assert _actions() == ["node.register"]


def test_maintenance_survives_silence_and_registration(personas: dict[str, Any]) -> None:
    node = register_node("gpu-01", FACTS)
    services.set_maintenance(personas["root"], node.pk, enabled=True, reason="驱动升级")
    _age(node, 3600)

    assert reconcile_nodes() == []
    assert register_node("gpu-01", FACTS).state == NodeState.MAINTENANCE
    heartbeat(node.pk)
    node.refresh_from_db()
    assert (node.state, node.maintenance_reason) == (NodeState.MAINTENANCE, "驱动升级")


def test_leaving_maintenance_goes_ready_or_unreachable_by_heartbeat(personas: dict[str, Any]) -> None:
    fresh, silent = register_node("gpu-01", FACTS), register_node("gpu-02", FACTS)
    for node in (fresh, silent):
        services.set_maintenance(personas["root"], node.pk, enabled=True)
    _age(silent, 3600)

    assert services.set_maintenance(personas["root"], fresh.pk, enabled=False).state == NodeState.READY
    assert services.set_maintenance(personas["root"], silent.pk, enabled=False).state == NodeState.UNREACHABLE
    with pytest.raises(Conflict):
        services.set_maintenance(personas["root"], fresh.pk, enabled=False)
    rec = AuditRecord.objects.filter(action="node.maintenance_on").first()
    assert rec is not None and rec.actor_name == "root"


@pytest.mark.parametrize("who", ["alice", "bob", "eve"])
def test_only_platform_admins_change_maintenance(personas: dict[str, Any], who: str) -> None:
    node = register_node("gpu-01", FACTS)
    with pytest.raises(PermissionDenied):
        services.set_maintenance(personas[who], node.pk, enabled=True)
    node.refresh_from_db()
    assert node.state == NodeState.READY

"""A real node worker, a console worker and beat: registration, heartbeats, inventory, unreachable, back."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from appliance.audit.models import AuditRecord
from appliance.gpus.choices import NodeState, Resolution
from appliance.gpus.models import Gpu, GpuMetric, GpuUnit, Node

from .conftest import CeleryProcesses, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE = "itest-node"
FAST = {
    "APPLIANCE_HEARTBEAT_SECONDS": "1",
    "APPLIANCE_INVENTORY_INTERVAL_SECONDS": "1",
    "APPLIANCE_NODE_MISSED_HEARTBEATS": "3",
}
NODE_ENV = {
    **FAST,
    "APPLIANCE_NODE_NAME": NODE,
    "APPLIANCE_SIMULATED_GPUS": "2x H100 80GB mig:3g.40gb,3g.40gb; 1x RTX 4090 24GB",
}


def _node() -> Node | None:
    return Node.objects.filter(name=NODE).first()


def _heartbeat() -> datetime:
    node = _node()
    return node.last_heartbeat if node and node.last_heartbeat else datetime.min.replace(tzinfo=UTC)


def _state() -> str | None:
    node = _node()
    return node.state if node else None


def test_node_worker_lifecycle(celery_processes: CeleryProcesses) -> None:
    celery_processes.beat(FAST)
    # The console's own worker: consumes only "default" (reconciliation), so it registers no node.
    celery_processes.worker(["default"], name="console", env={**FAST, "APPLIANCE_NODE_NAME": "itest-console"})
    worker = celery_processes.worker(["default", f"node.{NODE}"], name="node", env=NODE_ENV)

    wait_until(lambda: _state() == NodeState.READY, describe="the node to register")
    wait_until(lambda: GpuUnit.objects.count() == 5, describe="5 units: 4 MIG slices and one RTX 4090")
    assert Gpu.objects.filter(simulated=True).count() == 3
    assert set(GpuUnit.objects.values_list("simulated", flat=True)) == {True}
    first = _node()
    assert first is not None and first.simulated and first.driver_version == "580.159.04"
    registered_beat = first.last_heartbeat
    assert registered_beat is not None
    wait_until(lambda: _heartbeat() > registered_beat, describe="a heartbeat after registration")
    wait_until(lambda: GpuMetric.objects.filter(resolution=Resolution.RAW).count() >= 6, describe="2 rounds of samples")
    assert not Node.objects.filter(name="itest-console").exists()

    stopping = time.monotonic()
    worker.stop()
    wait_until(lambda: _state() == NodeState.UNREACHABLE, timeout=20, describe="unreachable after missed heartbeats")
    assert time.monotonic() - stopping <= 10.0
    unreachable = AuditRecord.objects.filter(action="node.unreachable", target_label=NODE).get()
    assert unreachable.actor_name == "system:task"
    silence = (unreachable.created_at - _heartbeat()).total_seconds()
    assert 3.0 <= silence <= 6.0, silence  # 3 missed 1-second heartbeats, plus at most a reconciler tick or two

    celery_processes.worker(["default", f"node.{NODE}"], name="node-again", env=NODE_ENV)
    wait_until(lambda: _state() == NodeState.READY, describe="ready again after restart")
    assert GpuUnit.objects.count() == 5  # the same UUIDs: nothing duplicated
    assert AuditRecord.objects.filter(action="node.register", target_label=NODE).count() == 2

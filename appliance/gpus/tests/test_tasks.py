"""The Celery tasks, run eagerly: thin wrappers that take ids, claim their node and stay idempotent."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.test import override_settings

from appliance.gpus import tasks
from appliance.gpus.choices import NodeState, Resolution
from appliance.gpus.models import Gpu, GpuMetric, Node
from appliance.gpus.nodes import register_node

from .conftest import FACTS

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests run tasks inline; the live worker is the integration suite's job."""
    from workers.celery import app

    monkeypatch.setattr(app.conf, "task_always_eager", True)


@override_settings(NODE_NAME="gpu-01", APPLIANCE_SIMULATED_GPUS="2x L40S 48GB")
def test_collect_inventory_on_its_node_then_skips_while_claimed() -> None:
    node = register_node("gpu-01", FACTS)

    assert tasks.collect_inventory.delay(node.pk).get() == "2 GPUs, 2 units, 4 changes"
    assert tasks.collect_inventory.delay(node.pk).get() == "claimed by another run"
    assert Gpu.objects.filter(node=node, simulated=True).count() == 2


@override_settings(NODE_NAME="gpu-02", APPLIANCE_SIMULATED_GPUS="1x L40S 48GB")
def test_collect_inventory_refuses_another_nodes_message() -> None:
    node = register_node("gpu-01", FACTS)
    assert tasks.collect_inventory.delay(node.pk).get() == "wrong node"
    assert tasks.collect_inventory.delay(10**9).get() == "no such node"
    assert not Gpu.objects.exists()


@override_settings(APPLIANCE_INVENTORY_INTERVAL_SECONDS=7)
def test_collection_is_queued_on_the_nodes_own_queue_with_an_expiry(django_capture_on_commit_callbacks: Any) -> None:
    node = Node(pk=5, name="gpu-07")
    with mock.patch.object(tasks.collect_inventory, "apply_async") as apply_async:
        tasks.queue_collection(node)
        with django_capture_on_commit_callbacks(execute=True):
            tasks.queue_collection(node, on_commit=True)
    assert apply_async.call_args_list == [mock.call(args=(5,), queue="node.gpu-07", expires=7)] * 2


def test_periodic_tasks_reconcile_roll_up_and_prune() -> None:
    node = register_node("gpu-01", FACTS)
    Node.objects.filter(pk=node.pk).update(last_heartbeat=None)
    assert tasks.reconcile_nodes.delay().get() == []  # no heartbeat at all: nothing to call stale
    assert Node.objects.get().state == NodeState.READY
    assert tasks.rollup_metrics.delay().get() == {"1m": 0, "1h": 0}
    assert tasks.prune_metrics.delay().get() == {"raw": 0, "1m": 0, "1h": 0}
    assert not GpuMetric.objects.filter(resolution=Resolution.MINUTE).exists()

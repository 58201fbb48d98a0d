"""Fixtures for the gpus app: nodes with simulated inventories stored through the real sync path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from appliance.gpus.hostinfo import HostFacts
from appliance.gpus.models import GpuUnit, Node
from appliance.gpus.nodes import register_node
from appliance.gpus.simulated import collect_simulated
from appliance.gpus.sync import apply_inventory

FACTS = HostFacts(
    hostname="gpu-01.example.cn",
    cpu_model="Intel(R) Xeon(R) Gold 5418Y",
    cpu_count=96,
    ram_bytes=128 * 1024**3,
    disk_bytes=4 * 1024**4,
    os="Debian GNU/Linux 12 (bookworm) (kernel 6.1.0)",
    docker_version="unreachable",
)

MakeNode = Callable[..., Node]


@pytest.fixture
def make_node(db: Any) -> MakeNode:
    def make(name: str = "gpu-01", spec: str = "2x RTX 4090 24GB") -> Node:
        node = register_node(name, FACTS)
        apply_inventory(node.pk, collect_simulated(spec, name))
        node.refresh_from_db()
        return node

    return make


def units_of(node: Node) -> list[GpuUnit]:
    return list(GpuUnit.objects.filter(gpu__node=node).order_by("pk"))

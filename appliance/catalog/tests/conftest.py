"""Fixtures for the catalog app: the seeded profiles and GPU inventories stored through the real sync path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from appliance.accounts.models import Department
from appliance.catalog.models import Profile, ProfileVersion
from appliance.catalog.seeds import seed_profiles
from appliance.gpus.hostinfo import HostFacts
from appliance.gpus.models import GpuUnit, Node
from appliance.gpus.nodes import register_node
from appliance.gpus.simulated import collect_simulated
from appliance.gpus.sync import apply_inventory

GIB = 1024**3
MakeNode = Callable[..., Node]


@pytest.fixture
def seeded(db: Any) -> dict[str, Profile]:
    """The seeded profiles by slug (re-created if a transactional test flushed them)."""
    seed_profiles(Profile, ProfileVersion)
    return {p.slug: p for p in Profile.objects.select_related("current_version")}


@pytest.fixture
def make_node(db: Any) -> MakeNode:
    def make(name: str = "gpu-01", spec: str = "2x RTX 4090 24GB", ram_gib: int = 128) -> Node:
        facts = HostFacts(name, "Xeon", 32, ram_gib * GIB, None, "Debian 12", "unreachable")
        node = register_node(name, facts)
        apply_inventory(node.pk, collect_simulated(spec, name))
        node.refresh_from_db()
        return node

    return make


def give_pool(node: Node, department: Department, count: int | None = None) -> list[GpuUnit]:
    """Put `count` (default all) of the node's present units into the department's pool."""
    units = list(GpuUnit.objects.filter(gpu__node=node, state="present").order_by("pk"))[:count]
    GpuUnit.objects.filter(pk__in=[u.pk for u in units]).update(department=department)
    return units

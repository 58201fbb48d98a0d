"""Nodes with simulated GPUs in a department's pool, built through the real inventory and assignment paths."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from appliance.accounts.models import Department, User
from appliance.catalog.models import Profile
from appliance.deployments.images import record_node_images
from appliance.gpus import services as gpu_services
from appliance.gpus.models import GpuUnit, Node
from appliance.gpus.simulated import collect_simulated
from appliance.gpus.sync import apply_inventory


def simulated_node(name: str, spec: str = "2x RTX 4090 24GB") -> Node:
    node = Node.objects.create(name=name, hostname=name)
    apply_inventory(node.pk, collect_simulated(spec, name))
    node.refresh_from_db()
    return node


def assign_all(admin: User, node: Node, department: Department) -> list[int]:
    ids = list(GpuUnit.objects.filter(gpu__node=node).values_list("pk", flat=True))
    with transaction.atomic():
        gpu_services.assign_units(admin, ids, department.pk)
    return ids


def with_images(node: Node, *tags: str) -> None:
    images = tags or tuple(settings.APPLIANCE_ENGINE_IMAGES.values())
    record_node_images(
        node, [{"tag": t, "image_id": f"sha256:{i:064d}", "size_bytes": 1, "created": ""} for i, t in enumerate(images)]
    )


def profile_id(slug: str) -> int:
    return Profile.objects.get(slug=slug).pk

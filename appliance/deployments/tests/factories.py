"""Nodes with simulated GPUs in a department's pool, built through the real inventory and assignment paths."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from appliance.accounts.models import Department, User
from appliance.catalog.models import Profile, ProfileVersion
from appliance.deployments import lifecycle
from appliance.deployments.choices import Desired, State
from appliance.deployments.models import Deployment, Instance
from appliance.gpus import services as gpu_services
from appliance.gpus.models import GpuUnit, Node
from appliance.gpus.simulated import collect_simulated
from appliance.gpus.sync import apply_inventory
from appliance.images.catalog import default_image, record_node_images
from appliance.images.models import NodeImage


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
    images = tags or tuple(default_image(e) for e in settings.APPLIANCE_ENGINE_IMAGES)
    record_node_images(
        node, [{"tag": t, "image_id": f"sha256:{i:064d}", "size_bytes": 1, "created": ""} for i, t in enumerate(images)]
    )


def profile_id(slug: str) -> int:
    return Profile.objects.get(slug=slug).pk


def idle_on_demand(
    department: Department, created_by: User, served_model_name: str, version: ProfileVersion, node_name: str
) -> Deployment:
    """An on-demand deployment stopped for want of use, with its image on a ready node (a CPU profile's
    deployment can be placed there): what the idle check leaves behind."""
    node, _ = Node.objects.get_or_create(name=node_name, defaults={"hostname": node_name})
    NodeImage.objects.get_or_create(node=node, tag="test", defaults={"image_id": "sha256:test"})
    return Deployment.objects.create(
        name=f"od-{served_model_name}"[:64], department=department, profile_version=version,
        engine=version.engine, model_slug=version.model, served_model_name=served_model_name, image="test",
        on_demand=True, idle_minutes=1, desired=Desired.IDLE, state=State.STOPPED, created_by=created_by,
    )  # fmt: skip


def play_node_worker(deployment_id: int, port: int) -> Instance | None:
    """What a node's worker does with a queued launch, without Docker: claim it, report a container
    listening on ``port`` (a test engine), then report it healthy. None when nothing was scheduled."""
    inst = Instance.objects.filter(deployment_id=deployment_id, state=State.SCHEDULED).first()
    if inst is None or lifecycle.claim_for_launch(inst.pk) is None:
        return None
    Instance.objects.filter(pk=inst.pk).update(host_port=port)
    lifecycle.mark_started(inst.pk, "c0ffee")
    lifecycle.mark_healthy(inst.pk, "test engine answers")
    return Instance.objects.get(pk=inst.pk)


def smollm2_profile(engine: str) -> int:
    """The seeded SmolLM2 CPU profile's figures under another engine (Ollama serves the same GGUF)."""
    from appliance.catalog.choices import DEFAULT_CHAT_DEFAULTS
    from appliance.catalog.models import ProfileVersion
    from appliance.catalog.seeds import SEED_PROFILES

    seed = next(s for s in SEED_PROFILES if s["profile"]["slug"] == "smollm2-cpu")
    profile = Profile.objects.create(
        slug=f"smollm2-{engine}", name=f"SmolLM2 135M on {engine}", tier="custom", description="live tests"
    )
    version = ProfileVersion.objects.create(
        profile=profile, number=1, chat_defaults=dict(DEFAULT_CHAT_DEFAULTS), **{**seed["version"], "engine": engine}
    )
    profile.current_version = version
    profile.save(update_fields=["current_version"])
    return profile.pk

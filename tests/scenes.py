"""A small appliance to look at: a GPU node whose units belong to 研发部, a CPU-only node whose NVML
failed, a running deployment and the audit trail all that leaves. Used by the page tests and by the
screenshot script (deploy/scripts/screenshots.sh)."""

from __future__ import annotations

from typing import Any

from appliance.accounts.models import Department, User
from appliance.deployments import services as deployment_services
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment
from appliance.deployments.tests.factories import assign_all, profile_id, simulated_node, with_images
from appliance.gpus.models import Node
from appliance.gpus.nvml import ERROR_PREFIX

GPU_NODE, CPU_NODE = "gpu-01", "cpu-01"


def seed_appliance(personas: dict[str, User], departments: dict[str, Department]) -> dict[str, Any]:
    node = simulated_node(GPU_NODE, "2x RTX 4090 24GB")
    assign_all(personas["root"], node, departments["eng"])
    with_images(node)
    Node.objects.create(
        name=CPU_NODE,
        hostname=CPU_NODE,
        ram_bytes=32 * 2**30,
        cpu_count=16,
        inventory_error=f"{ERROR_PREFIX}NVML Shared Library Not Found",
    )
    dep = deployment_services.create_deployment(
        personas["alice"], profile_id=profile_id("basic-7b"), department_id=departments["eng"].pk, name="web-7b"
    )
    # What the node's worker would report once the engine answered.
    dep.instances.update(state=State.RUNNING, host_port=20000, health_detail="healthy after 41 s: ")
    Deployment.objects.filter(pk=dep.pk).update(state=State.RUNNING, state_reason="healthy after 41 s: ")
    return {"deployment": Deployment.objects.get(pk=dep.pk)}

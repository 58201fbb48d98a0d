"""From an instance row to the Docker SDK's ``containers.create`` arguments, via the engine adapter."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from django.conf import settings

from appliance.deployments.choices import CONTAINER_LABEL_REPLICA, Role
from appliance.deployments.engine_keys import engine_key
from appliance.deployments.launchspec import launch_spec
from appliance.deployments.models import Instance
from appliance.engines import EngineRequest, build_specs
from appliance.engines import Role as EngineRole
from appliance.engines.registry import GGUF_ENGINES


def engine_request(inst: Instance) -> EngineRequest:
    dep = inst.deployment
    spec = launch_spec(dep.profile_version)
    head = inst if inst.role != Role.RAY_WORKER else dep.instances.get(replica=inst.replica, role=Role.RAY_HEAD)
    return EngineRequest(
        deployment_id=str(dep.pk),
        console_id=settings.CONSOLE_ID,
        node_name=inst.node.name,
        engine=dep.engine,
        image=dep.image,
        served_model_name=dep.served_model_name,
        host_port=inst.host_port or head.host_port or 0,
        model_path=spec.model_path,
        hf_model_id=spec.hf_model_id,
        gpu_uuids=list(inst.gpu_uuids),
        tensor_parallel=spec.tensor_parallel,
        pipeline_parallel=spec.pipeline_parallel,
        max_model_len=spec.max_model_len,
        gpu_memory_utilization=spec.gpu_memory_utilization,
        dtype=spec.dtype,
        quantization=spec.quantization,
        max_num_seqs=spec.max_num_seqs,
        n_gpu_layers=spec.n_gpu_layers,
        parallel=spec.parallel,
        threads=spec.threads or cpu_threads(inst),
        extra_args=spec.extra_args,
        models_dir=settings.APPLIANCE_MODELS_DIR or None,
        role=EngineRole(inst.role),
        ray_head_address=head.endpoint_host if inst.role == Role.RAY_WORKER else "",
        node_ip=settings.APPLIANCE_NODE_ADDRESS if inst.role != Role.SINGLE else "",
        node_rank=inst.rank,
        bind_address=settings.APPLIANCE_ENGINE_BIND_ADDRESS,
        api_key=engine_key(dep.pk),
        allowed_media_domains=tuple(dep.department.allowed_media_domains or ()),
    )


def cpu_threads(inst: Instance) -> int | None:
    """Generation threads of a CPU-only GGUF engine on this node (the node worker builds the spec).

    llama.cpp's default is one thread per logical CPU; its threads spin at every barrier, so beside the
    console and other engines on the same cores that default decodes 4-6x slower than half of them
    (measured in docs/performance.md). Half the CPUs, as llama-cpp-python chose, unless set.
    """
    if inst.gpu_uuids or inst.deployment.engine not in GGUF_ENGINES:
        return None
    return settings.APPLIANCE_ENGINE_CPU_THREADS or max(1, (os.cpu_count() or 2) // 2)


def container_kwargs(inst: Instance) -> dict[str, Any]:
    """Arguments for ``containers.create``; the name and an instance label are the console's own."""
    specs = build_specs(engine_request(inst))
    spec = next(s for s in specs if str(s.role) == inst.role)
    spec = dataclasses.replace(
        spec, name=inst.container_name, labels={**spec.labels, CONTAINER_LABEL_REPLICA: str(inst.pk)}
    )
    return spec.to_create_kwargs()

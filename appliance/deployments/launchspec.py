"""What a deployment needs from its profile version, in the terms of placement and the engines.

Model files live on each node under ``APPLIANCE_MODELS_DIR`` (mounted read-only at /models):
``<slug>/`` for safetensors checkpoints served by vLLM, ``<slug>.gguf`` for llama.cpp and Ollama.
The local CPU image carries its GGUF at the same path, so nothing is mounted for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.catalog.catalog import ModelEntry, get_model
from appliance.catalog.models import CustomModel, Profile, ProfileVersion
from appliance.catalog.planner import PlanRequest, plan
from appliance.core.exceptions import InvalidInput
from appliance.engines.registry import GGUF_ENGINES


@dataclass(frozen=True)
class LaunchSpec:
    engine: str
    model_slug: str
    served_model_name: str
    nodes: int
    gpus_per_node: int
    min_memory_gib: float
    tensor_parallel: int
    pipeline_parallel: int
    max_model_len: int
    gpu_memory_utilization: float | None
    max_num_seqs: int | None
    dtype: str | None
    quantization: str | None
    n_gpu_layers: int | None
    extra_args: Any
    model_path: str = ""
    hf_model_id: str = ""
    parallel: int | None = None
    threads: int | None = None


def latest_version(profile_id: int) -> ProfileVersion:
    profile = Profile.objects.select_related("current_version").filter(pk=profile_id).first()
    if profile is None or profile.current_version is None:
        raise InvalidInput(f"profile: profile {profile_id} does not exist.", code="invalid_profile")
    if profile.archived_at is not None:
        raise InvalidInput(f"profile: profile {profile.name} is archived.", code="invalid_profile")
    return profile.current_version


def _gpu_layers(version: ProfileVersion, memory_gib: float) -> int | None:
    if version.engine not in GGUF_ENGINES:
        return None
    if version.gpus_per_node == 0:
        return 0
    result = plan(
        PlanRequest(
            model=version.model,
            gpu_count=version.gpus_per_node,
            memory_per_gpu_gib=memory_gib,
            context_length=version.max_model_len,
            engine=version.engine,
            gpu_memory_utilization=version.gpu_memory_utilization,
        )
    )
    return result.n_gpu_layers


def launch_spec(version: ProfileVersion) -> LaunchSpec:
    entry = _entry(version.model)
    gguf = version.engine in GGUF_ENGINES
    memory = version.min_gpu_memory_gib or 0.0
    return LaunchSpec(
        engine=version.engine,
        model_slug=version.model,
        served_model_name=entry.served_model_name,
        nodes=version.nodes,
        gpus_per_node=version.gpus_per_node,
        min_memory_gib=memory,
        tensor_parallel=version.tensor_parallel if not gguf else 1,
        pipeline_parallel=version.pipeline_parallel if not gguf else 1,
        max_model_len=version.max_model_len,
        gpu_memory_utilization=version.gpu_memory_utilization if not gguf else None,
        max_num_seqs=version.max_num_seqs if not gguf else None,
        dtype=_vllm_dtype(version.precision) if not gguf else None,
        quantization="fp8" if version.precision == "fp8" and not gguf else None,
        n_gpu_layers=_gpu_layers(version, memory or 24.0),
        extra_args=version.extra_args or (),
        model_path=f"{version.model}.gguf" if gguf else version.model,
    )


def _entry(slug: str) -> ModelEntry:
    try:
        return get_model(slug)
    except KeyError:
        custom = CustomModel.objects.filter(slug=slug).first()
        if custom is None:
            raise InvalidInput(f"profile: model {slug} is not in the catalog.", code="invalid_profile") from None
        return custom.entry()


def _vllm_dtype(precision: str) -> str | None:
    return {"bf16": "bfloat16", "fp16": "half", "auto": "auto"}.get(precision)

"""The request's own checks, and every spec against the real docker SDK's argument conversion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from docker.constants import DEFAULT_DOCKER_API_VERSION
from docker.models.containers import _create_container_args
from docker.types import DeviceRequest

from appliance.engines import (
    ContainerSpec,
    EngineError,
    EngineRequest,
    LlamaCppPythonEngine,
    LlamaServerEngine,
    OllamaEngine,
    Role,
    VllmEngine,
    build_specs,
    engine_for,
)
from appliance.engines.flags import VLLM_FLAGS, parse_table

GPU = "GPU-341a9345-4265-f847-9deb-7ae559817e0a"
MIG = "MIG-5a1c3e2f-0b6d-5f41-9c1e-2d4b6a8c0e11"


def request(**overrides: Any) -> EngineRequest:
    fields: dict[str, Any] = {
        "api_key": "ek_test",
        "deployment_id": "dep1",
        "console_id": "console1",
        "node_name": "node-a",
        "engine": "vllm",
        "image": "vllm/vllm-openai:v0.33.0",
        "served_model_name": "qwen2.5-7b",
        "model_path": "Qwen2.5-7B-Instruct",
        "host_port": 30001,
        "gpu_uuids": [GPU],
    }
    return EngineRequest(**(fields | overrides))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tensor_parallel", 0),
        ("tensor_parallel", True),  # a bool is an int to Python, not a GPU count
        ("pipeline_parallel", -1),
        ("gpu_memory_utilization", 0),
        ("gpu_memory_utilization", 1.01),
        ("gpu_memory_utilization", -0.5),
        ("host_port", 0),
        ("host_port", 65536),
        ("max_model_len", 0),
        ("max_num_seqs", 0),
        ("parallel", 0),
        ("threads", 0),
        ("n_gpu_layers", -2),
        ("node_rank", -1),
        ("gpu_uuids", ["all"]),
        ("gpu_uuids", ["0"]),
        ("gpu_uuids", [f"{GPU},{MIG}"]),
        ("gpu_uuids", [GPU, GPU]),
        ("deployment_id", "bad/name"),
        ("deployment_id", ""),
        ("served_model_name", " "),
        ("model_path", "/etc/passwd"),
        ("model_path", "../../etc"),
        ("models_dir", "relative/models"),
        ("bind_address", "localhost"),
        ("env", {"BAD-NAME": "x"}),
    ],
)
def test_bad_values_are_refused(field: str, value: Any) -> None:
    with pytest.raises(EngineError) as caught:
        request(**{field: value})
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


def test_model_is_named_exactly_once() -> None:
    with pytest.raises(EngineError, match="exactly one"):
        request(hf_model_id="Qwen/Qwen2.5-7B-Instruct")
    with pytest.raises(EngineError, match="exactly one"):
        request(model_path="")


def test_edge_values_are_accepted() -> None:
    req = request(gpu_memory_utilization=1, host_port=65535, gpu_uuids=[GPU, MIG], n_gpu_layers=-1, role="single")
    assert req.gpu_uuids == (GPU, MIG)
    assert req.role is Role.SINGLE


def every_spec() -> list[ContainerSpec]:
    gpus = [f"GPU-{i:08x}-0000-4000-8000-000000000000" for i in range(8)]
    cluster = {"tensor_parallel": 8, "pipeline_parallel": 2, "gpu_uuids": gpus, "ray_head_address": "10.0.0.1"}
    gguf = {"model_path": "m.gguf", "models_dir": "/srv/models"}
    return [
        *VllmEngine().build_spec(request(extra_args={"--enable-prefix-caching": True})),
        *VllmEngine().build_spec(request(role="ray-head", node_ip="10.0.0.1", **cluster)),
        *VllmEngine().build_spec(request(role="ray-worker", node_ip="10.0.0.2", node_rank=1, **cluster)),
        *OllamaEngine().build_spec(request(engine="ollama", image="ollama/ollama:0.32.15", gpu_uuids=[MIG], **gguf)),
        *LlamaCppPythonEngine().build_spec(
            request(engine="llamacpp", image="appliance/llamacpp-cpu", gpu_uuids=[], **gguf)
        ),
        *LlamaServerEngine().build_spec(request(engine="llamacpp", image="ghcr.io/ggml-org/llama.cpp:server", **gguf)),
    ]


@pytest.mark.parametrize("spec", every_spec(), ids=lambda s: s.name)
def test_create_kwargs_pass_the_docker_sdks_own_conversion(spec: ContainerSpec) -> None:
    kwargs = spec.to_create_kwargs()
    # containers.create(image, command, **kwargs) adds the API version, then converts exactly so.
    converted = _create_container_args({**kwargs, "version": DEFAULT_DOCKER_API_VERSION})

    host_config = converted["host_config"]
    assert converted["image"] == spec.image and converted["labels"] == spec.labels
    assert host_config["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "50m", "max-file": "5"}}
    assert host_config["RestartPolicy"] == {"Name": "no"}
    for device_request in host_config.get("DeviceRequests", []):
        assert isinstance(device_request, DeviceRequest)
        assert device_request["Count"] == 0 and device_request["DeviceIDs"]  # never count=-1, "all"
    if spec.network_mode == "host":
        assert "PortBindings" not in host_config  # docker refuses published ports with host networking


def test_create_kwargs_are_a_fresh_copy() -> None:
    [spec] = VllmEngine().build_spec(request())
    kwargs = spec.to_create_kwargs()
    kwargs["environment"]["HF_HUB_OFFLINE"] = "0"
    assert spec.to_create_kwargs()["environment"]["HF_HUB_OFFLINE"] == "1"


def test_engine_for_picks_the_adapter() -> None:
    assert isinstance(engine_for("vllm"), VllmEngine)
    assert isinstance(engine_for("ollama"), OllamaEngine)
    assert isinstance(engine_for("llamacpp", "appliance/llamacpp-cpu:latest"), LlamaServerEngine)
    assert isinstance(engine_for("llamacpp", "local/llama-cpp-python:0.3.36"), LlamaCppPythonEngine)
    assert isinstance(engine_for("llamacpp", "ghcr.io/ggml-org/llama.cpp:server"), LlamaServerEngine)
    with pytest.raises(EngineError, match="engine"):
        engine_for("tensorrt-llm")
    assert build_specs(request())[0].name == "appliance-vllm-dep1"


def test_request_for_another_engine_is_refused() -> None:
    with pytest.raises(EngineError, match="engine"):
        OllamaEngine().build_spec(request())


def test_flag_table_format() -> None:
    table = parse_table("--port !--metrics|-M --ctx-size|-c")
    assert dict(table.canonical) == {
        **{"--port": "--port", "--metrics": "--metrics", "-M": "--metrics"},
        **{"--ctx-size": "--ctx-size", "-c": "--ctx-size"},
    }
    assert table.switches == frozenset({"--metrics"})
    assert table.known() == ["--ctx-size", "--metrics", "--port"]
    assert VLLM_FLAGS.canonical["-tp"] == "--tensor-parallel-size"
    assert "--enforce-eager" in VLLM_FLAGS.switches and "--max-model-len" not in VLLM_FLAGS.switches


def test_the_package_imports_without_django() -> None:
    code = "import sys, appliance.engines; assert 'django' not in sys.modules, sorted(sys.modules)"
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={"PYTHONPATH": str(root)})

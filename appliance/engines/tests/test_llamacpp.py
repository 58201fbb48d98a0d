"""llama.cpp specs: our CPU image (llama-cpp-python) and upstream llama-server, keyed by image."""

from __future__ import annotations

from typing import Any

import pytest
from docker.types import DeviceRequest

from appliance.engines import EngineError, EngineRequest, FlagError, LlamaCppPythonEngine, LlamaServerEngine
from appliance.engines.flags import LLAMACPP_IMAGE
from appliance.engines.llamacpp import llamacpp_engine_for

SMOL = "smollm2-135m-instruct-q4_1"
UPSTREAM = "ghcr.io/ggml-org/llama.cpp:server-cuda"


def request(**overrides: Any) -> EngineRequest:
    fields: dict[str, Any] = {
        "api_key": "ek_test",
        "deployment_id": "smol",
        "console_id": "console1",
        "node_name": "node-a",
        "engine": "llamacpp",
        "image": LLAMACPP_IMAGE,
        "served_model_name": SMOL,
        "model_path": f"{SMOL}.gguf",
        "models_dir": None,  # the image ships its model in /models
        "host_port": 30030,
        "max_model_len": 2048,
        "threads": 2,
    }
    return EngineRequest(**(fields | overrides))


def test_cpu_image_without_gpus_requests_no_device() -> None:
    [spec] = LlamaCppPythonEngine().build_spec(request())

    assert spec.to_create_kwargs() == {
        "name": "appliance-llamacpp-smol",
        "image": "appliance/llamacpp-cpu:latest",
        "entrypoint": ["python", "-m", "llama_cpp.server"],
        "command": [
            *("--model", f"/models/{SMOL}.gguf", "--model_alias", SMOL, "--host", "0.0.0.0", "--port", "8000"),
            *("--n_ctx", "2048", "--n_gpu_layers", "0", "--n_threads", "2", "--interrupt_requests", "false"),
        ],
        "labels": {
            "appliance.console": "console1",
            "appliance.deployment": "smol",
            "appliance.node": "node-a",
            "appliance.engine": "llamacpp",
            "appliance.role": "single",
        },
        "environment": {"NVIDIA_VISIBLE_DEVICES": "void", "API_KEY": "ek_test"},
        "ports": {"8000/tcp": ("127.0.0.1", 30030)},
        "healthcheck": {
            "test": [
                *("CMD", "python", "-c"),
                "import os, urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8000/v1/models', "
                "headers={'Authorization': 'Bearer ' + os.environ.get('API_KEY', '')}), timeout=4)",
            ],
            "interval": 30_000_000_000,
            "timeout": 5_000_000_000,
            "retries": 3,
            "start_period": 1800_000_000_000,
        },
        "log_config": {"type": "json-file", "config": {"max-size": "50m", "max-file": "5"}},
        "restart_policy": {"Name": "no"},
    }
    assert "device_requests" not in spec.to_create_kwargs() and "volumes" not in spec.to_create_kwargs()
    assert (spec.container_port, spec.health_path, spec.models_path, spec.metrics_path) == (
        8000,
        "/v1/models",
        "/v1/models",
        None,
    )


def test_cpu_node_ignores_a_gpu_layer_plan() -> None:
    [spec] = LlamaCppPythonEngine().build_spec(request(n_gpu_layers=40))
    assert spec.command[spec.command.index("--n_gpu_layers") + 1] == "0"


def test_models_dir_is_mounted_read_only() -> None:
    [spec] = LlamaCppPythonEngine().build_spec(request(models_dir="/srv/models", model_path="unsloth/R1-UD-IQ1_S.gguf"))
    assert spec.volumes == {"/srv/models": {"bind": "/models", "mode": "ro"}}
    assert spec.command[:2] == ["--model", "/models/unsloth/R1-UD-IQ1_S.gguf"]


def test_llama_cpp_python_has_no_parallel_slots() -> None:
    with pytest.raises(EngineError, match="one request at a time"):
        LlamaCppPythonEngine().build_spec(request(parallel=4))


def test_llama_cpp_python_flags_are_its_field_names() -> None:
    engine = LlamaCppPythonEngine()
    engine.validate_extra_args(["--n_batch", "256", "--flash_attn", "true"])
    with pytest.raises(FlagError) as caught:
        engine.validate_extra_args(["--n-batch", "256", "--config_file", "x.json"])
    assert caught.value.unknown == ["--n-batch", "--config_file"]
    assert "--n_batch" in caught.value.known
    with pytest.raises(FlagError, match="set by the console"):
        engine.validate_extra_args({"--n_ctx": 4096})


def test_booleans_render_as_values_for_llama_cpp_python() -> None:
    [spec] = LlamaCppPythonEngine().build_spec(request(extra_args={"--use_mlock": False, "--n_batch": 256}))
    assert spec.command[-4:] == ["--use_mlock", "false", "--n_batch", "256"]


def test_upstream_server_on_gpus() -> None:
    uuids = ["GPU-00000000-0000-4000-8000-000000000000", "GPU-00000001-0000-4000-8000-000000000000"]
    req = request(image=UPSTREAM, gpu_uuids=uuids, n_gpu_layers=-1, parallel=4, models_dir="/srv/models")
    [spec] = LlamaServerEngine().build_spec(req)

    assert spec.entrypoint == ["/app/llama-server"]
    assert spec.command == [
        *("-m", f"/models/{SMOL}.gguf", "--alias", SMOL, "--host", "0.0.0.0", "--port", "8080", "--metrics"),
        *("-c", "2048", "-ngl", "all", "-np", "4", "-t", "2"),
    ]
    assert spec.ports == {"8080/tcp": ("127.0.0.1", 30030)}
    assert spec.device_requests == [DeviceRequest(driver="nvidia", device_ids=uuids, capabilities=[["gpu"]])]
    assert spec.environment == {"NVIDIA_VISIBLE_DEVICES": ",".join(uuids), "LLAMA_API_KEY": "ek_test"}
    assert spec.healthcheck is not None and spec.healthcheck["test"] == [
        *("CMD", "curl", "-f", "http://localhost:8080/health"),
    ]
    assert (spec.health_path, spec.metrics_path) == ("/health", "/metrics")


def test_upstream_server_flags() -> None:
    engine = LlamaServerEngine()
    engine.validate_extra_args(["-fa", "on", "--cont-batching", "--cache-type-k", "q8_0", "-b", "512"])
    with pytest.raises(FlagError, match="set by the console"):
        engine.validate_extra_args(["--ctx-size", "4096"])
    with pytest.raises(FlagError, match="set by the console"):
        engine.validate_extra_args(["--n-gpu-layers", "10"])  # an alias of -ngl
    with pytest.raises(FlagError, match="set by the console"):
        engine.validate_extra_args(["--n_gpu_layers", "10"])  # llama.cpp reads "_" as "-" in "--" options
    engine.validate_extra_args(["--cache_type_k", "q8_0"])
    with pytest.raises(FlagError) as caught:
        engine.validate_extra_args(["--n_ctx", "4096", "-b=512"])  # no "=" form in llama.cpp's parser
    assert caught.value.unknown == ["--n_ctx", "-b=512"]


@pytest.mark.parametrize(
    ("image", "variant"),
    [
        ("ghcr.io/ggml-org/llama.cpp:server", LlamaServerEngine),
        ("ghcr.io/ggml-org/llama.cpp:server-cuda", LlamaServerEngine),
        ("registry.local:5000/ggml-org/llama.cpp@sha256:" + "0" * 64, LlamaServerEngine),
        ("appliance/llamacpp-cpu:latest", LlamaServerEngine),
        ("appliance/llamacpp-cpu:2026.10.11549-abc123", LlamaServerEngine),
        ("registry.local/abetlen/llama-cpp-python:0.3.36", LlamaCppPythonEngine),
    ],
)
def test_variant_is_keyed_by_image(image: str, variant: type) -> None:
    assert type(llamacpp_engine_for(image)) is variant


@pytest.mark.parametrize(
    ("field", "value"),
    [("tensor_parallel", 2), ("gpu_memory_utilization", 0.9), ("model_path", "model.safetensors")],
)
def test_values_llama_cpp_cannot_run_are_refused(field: str, value: Any) -> None:
    with pytest.raises(EngineError) as caught:
        LlamaCppPythonEngine().build_spec(request(**{field: value}))
    assert caught.value.field == field

"""Ollama specs (MIG slices included), its Modelfile and the current `POST /api/create` body."""

from __future__ import annotations

from typing import Any

import pytest
from docker.types import DeviceRequest

from appliance.engines import EngineError, EngineRequest, FlagError, OllamaEngine
from appliance.engines.flags import OLLAMA_IMAGE
from appliance.engines.ollama import blob_path, create_model_payload, modelfile

ENGINE = OllamaEngine()
MIG = ["MIG-5a1c3e2f-0b6d-5f41-9c1e-2d4b6a8c0e11", "MIG-7e9a2c4b-6d8f-5a03-b5c7-e9f1a3c5e7a9"]
DIGEST = "a" * 64
TEMPLATE = "{{ if .System }}{{ .System }}{{ end }}<｜User｜>{{ .Prompt }}<｜Assistant｜>"


def request(**overrides: Any) -> EngineRequest:
    fields: dict[str, Any] = {
        "deployment_id": "olla1",
        "console_id": "console1",
        "node_name": "node-a",
        "engine": "ollama",
        "image": OLLAMA_IMAGE,
        "served_model_name": "deepseek-r1-7b",
        "model_path": "gguf/DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf",
        "host_port": 30020,
        "gpu_uuids": MIG,
        "max_model_len": 8192,
        "parallel": 4,
    }
    return EngineRequest(**(fields | overrides))


def test_ollama_on_two_mig_slices() -> None:
    [spec] = ENGINE.build_spec(request())

    assert spec.to_create_kwargs() == {
        "name": "appliance-ollama-olla1",
        "image": "ollama/ollama:0.32.15",
        "command": ["serve"],
        "labels": {
            "appliance.console": "console1",
            "appliance.deployment": "olla1",
            "appliance.node": "node-a",
            "appliance.engine": "ollama",
            "appliance.role": "single",
        },
        "environment": {
            "OLLAMA_HOST": "0.0.0.0:11434",
            "OLLAMA_MODELS": "/root/.ollama/models",
            "OLLAMA_NUM_PARALLEL": "4",
            "OLLAMA_MAX_QUEUE": "512",
            "OLLAMA_KEEP_ALIVE": "24h",
            "OLLAMA_MAX_LOADED_MODELS": "1",
            "NVIDIA_VISIBLE_DEVICES": ",".join(MIG),
            "OLLAMA_CONTEXT_LENGTH": "8192",
        },
        "ports": {"11434/tcp": ("127.0.0.1", 30020)},
        "device_requests": [DeviceRequest(driver="nvidia", device_ids=MIG, capabilities=[["gpu"]])],
        "volumes": {
            "/var/lib/appliance/models": {"bind": "/models", "mode": "ro"},
            "appliance-ollama-console1-olla1": {"bind": "/root/.ollama", "mode": "rw"},
        },
        "healthcheck": {
            "test": ["CMD", "/bin/ollama", "list"],
            "interval": 30_000_000_000,
            "timeout": 5_000_000_000,
            "retries": 3,
            "start_period": 60_000_000_000,
        },
        "log_config": {"type": "json-file", "config": {"max-size": "50m", "max-file": "5"}},
        "restart_policy": {"Name": "no"},
    }
    assert (spec.container_port, spec.health_path, spec.models_path, spec.metrics_path) == (
        11434,
        "/",
        "/api/tags",
        None,
    )


def test_modelfile_points_at_the_mounted_gguf() -> None:
    text = modelfile(request(n_gpu_layers=28, threads=16, template=TEMPLATE))
    assert text == (
        "FROM /models/gguf/DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf\n"
        "PARAMETER num_ctx 8192\n"
        "PARAMETER num_thread 16\n"
        "PARAMETER num_gpu 28\n"
        f'TEMPLATE """{TEMPLATE}"""\n'
    )


def test_modelfile_on_cpu_keeps_every_layer_on_the_cpu() -> None:
    text = modelfile(request(gpu_uuids=[], max_model_len=None))
    assert text == "FROM /models/gguf/DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf\nPARAMETER num_gpu 0\n"


def test_create_payload_uses_files_and_parameters() -> None:
    payload = create_model_payload(request(n_gpu_layers=-1, template=TEMPLATE), f"sha256:{DIGEST}")
    assert payload == {
        "model": "deepseek-r1-7b",
        "files": {"DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf": f"sha256:{DIGEST}"},
        "parameters": {"num_ctx": 8192, "num_gpu": -1},
        "template": TEMPLATE,
        "stream": False,
    }
    assert "modelfile" not in payload  # removed from the API in Ollama 0.5.5
    assert blob_path(DIGEST) == f"/api/blobs/sha256:{DIGEST}"


@pytest.mark.parametrize("digest", ["sha256:" + "A" * 64, "abc", "sha512:" + "a" * 64])
def test_bad_digest_is_refused(digest: str) -> None:
    with pytest.raises(EngineError, match="digest"):
        create_model_payload(request(), digest)


def test_extra_args_are_known_ollama_variables() -> None:
    [spec] = ENGINE.build_spec(request(extra_args={"OLLAMA_FLASH_ATTENTION": True, "OLLAMA_KV_CACHE_TYPE": "q8_0"}))
    assert spec.environment["OLLAMA_FLASH_ATTENTION"] == "true"
    assert spec.environment["OLLAMA_KV_CACHE_TYPE"] == "q8_0"
    [listed] = ENGINE.build_spec(request(extra_args=["OLLAMA_SCHED_SPREAD=1"]))
    assert listed.environment["OLLAMA_SCHED_SPREAD"] == "1"


def test_unknown_variable_is_refused_with_the_known_list() -> None:
    with pytest.raises(FlagError) as caught:
        ENGINE.validate_extra_args({"OLLAMA_TURBO": "1"})
    assert caught.value.unknown == ["OLLAMA_TURBO"]
    assert "OLLAMA_FLASH_ATTENTION" in caught.value.known
    assert "Known: " in str(caught.value)


@pytest.mark.parametrize("args", [{"OLLAMA_HOST": "0.0.0.0:80"}, ["CUDA_VISIBLE_DEVICES=0"]])
def test_variables_the_console_sets_are_refused(args: Any) -> None:
    with pytest.raises(FlagError, match="set by the console"):
        ENGINE.validate_extra_args(args)


def test_extra_args_without_a_value_are_refused() -> None:
    with pytest.raises(FlagError, match="NAME=value"):
        ENGINE.validate_extra_args(["--verbose"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tensor_parallel", 2),
        ("dtype", "half"),
        ("model_path", "DeepSeek-R1-Distill-Qwen-7B"),  # a safetensors directory, not a GGUF
        ("template", 'say """hi"""'),
    ],
)
def test_values_ollama_cannot_run_are_refused(field: str, value: Any) -> None:
    with pytest.raises(EngineError) as caught:
        ENGINE.build_spec(request(**{field: value}))
    assert caught.value.field == field


def test_ollama_is_single_node() -> None:
    with pytest.raises(EngineError, match="one node"):
        ENGINE.build_spec(request(role="ray-head", node_ip="10.0.0.1"))

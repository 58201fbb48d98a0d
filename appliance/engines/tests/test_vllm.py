"""vLLM specs for the three tiers: exact commands, environment, labels, GPUs and ports."""

from __future__ import annotations

from typing import Any

import pytest
from docker.types import DeviceRequest

from appliance.engines import EngineError, EngineRequest, FlagError, Role, VllmEngine
from appliance.engines.flags import VLLM_IMAGE

ENGINE = VllmEngine()
# Ray's own ports, pinned so the firewall rules in docs/engines.md can name them; no dashboard (its job
# API runs code), no usage stats.
RAY_PORT_FLAGS = (
    "--node-manager-port=6380 --object-manager-port=6381 --runtime-env-agent-port=6382"
    " --dashboard-agent-grpc-port=6383 --dashboard-agent-listen-port=6384 --metrics-export-port=6385"
    " --min-worker-port=10002 --max-worker-port=10999 --include-dashboard=false --disable-usage-stats"
)
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "50m", "max-file": "5"}}


def gpus(count: int, node: int = 0) -> list[str]:
    return [f"GPU-{index:08x}-0000-4000-8000-{node:012x}" for index in range(count)]


def request(**overrides: Any) -> EngineRequest:
    fields: dict[str, Any] = {
        "api_key": "ek_test",
        "deployment_id": "dep7b",
        "console_id": "console1",
        "node_name": "node-a",
        "engine": "vllm",
        "image": VLLM_IMAGE,
        "served_model_name": "deepseek-r1-distill-qwen-7b",
        "model_path": "DeepSeek-R1-Distill-Qwen-7B",
        "host_port": 30001,
        "gpu_uuids": gpus(1),
    }
    return EngineRequest(**(fields | overrides))


def labels(deployment: str, node: str, role: str) -> dict[str, str]:
    return {
        "appliance.console": "console1",
        "appliance.deployment": deployment,
        "appliance.node": node,
        "appliance.engine": "vllm",
        "appliance.role": role,
    }


def test_basic_tier_7b_on_one_gpu() -> None:
    req = request(max_model_len=8192, gpu_memory_utilization=0.9, dtype="half", max_num_seqs=32)
    [spec] = ENGINE.build_spec(req)

    assert spec.to_create_kwargs() == {
        "name": "appliance-vllm-dep7b",
        "image": "vllm/vllm-openai:v0.33.0",
        "entrypoint": ["vllm", "serve"],
        "command": [
            *("--model", "/models/DeepSeek-R1-Distill-Qwen-7B", "--served-model-name", "deepseek-r1-distill-qwen-7b"),
            *("--host", "0.0.0.0", "--port", "8000"),
            *("--tensor-parallel-size", "1", "--pipeline-parallel-size", "1"),
            *("--gpu-memory-utilization", "0.9", "--max-model-len", "8192", "--dtype", "half"),
            *("--max-num-seqs", "32", "--reasoning-parser", "deepseek_r1"),
            *("--allowed-media-domains", "media.invalid"),
        ],
        "labels": labels("dep7b", "node-a", "single"),
        "environment": {
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "NVIDIA_VISIBLE_DEVICES": gpus(1)[0],
            "VLLM_API_KEY": "ek_test",
            "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "0",
        },
        "ports": {"8000/tcp": ("127.0.0.1", 30001)},
        "device_requests": [DeviceRequest(driver="nvidia", device_ids=gpus(1), capabilities=[["gpu"]])],
        "volumes": {"/var/lib/appliance/models": {"bind": "/models", "mode": "ro"}},
        "ipc_mode": "host",
        "healthcheck": {
            "test": [
                *("CMD", "python3", "-c"),
                "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health', timeout=4)",
            ],
            "interval": 30_000_000_000,
            "timeout": 5_000_000_000,
            "retries": 3,
            "start_period": 1800_000_000_000,
        },
        "log_config": LOG_CONFIG,
        "restart_policy": {"Name": "no"},
    }
    assert (spec.container_port, spec.health_path, spec.models_path, spec.metrics_path) == (
        8000,
        "/health",
        "/v1/models",
        "/metrics",
    )


def test_standard_tier_32b_tensor_parallel_4() -> None:
    req = request(
        deployment_id="dep32b",
        served_model_name="deepseek-r1-distill-qwen-32b",
        model_path="DeepSeek-R1-Distill-Qwen-32B",
        gpu_uuids=gpus(4),
        tensor_parallel=4,
        max_model_len=4096,
        extra_args={"--enable-prefix-caching": True, "--max-num-batched-tokens": 8192},
    )
    [spec] = ENGINE.build_spec(req)

    assert spec.command == [
        *("--model", "/models/DeepSeek-R1-Distill-Qwen-32B", "--served-model-name", "deepseek-r1-distill-qwen-32b"),
        *("--host", "0.0.0.0", "--port", "8000", "--tensor-parallel-size", "4", "--pipeline-parallel-size", "1"),
        *("--max-model-len", "4096", "--reasoning-parser", "deepseek_r1"),
        *("--enable-prefix-caching", "--max-num-batched-tokens", "8192"),
        *("--allowed-media-domains", "media.invalid"),
    ]
    assert spec.device_requests == [DeviceRequest(driver="nvidia", device_ids=gpus(4), capabilities=[["gpu"]])]
    assert spec.device_requests[0]["Count"] == 0  # by UUID, never count=-1 ("all")
    assert spec.environment["NVIDIA_VISIBLE_DEVICES"] == ",".join(gpus(4))


def flagship(role: Role, node: str, node_ip: str, rank: int) -> EngineRequest:
    return request(
        deployment_id="r1",
        node_name=node,
        served_model_name="deepseek-r1",
        model_path="DeepSeek-R1",
        host_port=30010,
        gpu_uuids=gpus(8, node=rank),
        tensor_parallel=8,
        pipeline_parallel=2,
        max_model_len=16384,
        role=role,
        node_ip=node_ip,
        node_rank=rank,
        ray_head_address="10.0.0.1",
    )


def test_flagship_head_starts_ray_then_serves_with_the_ray_backend() -> None:
    [head] = ENGINE.build_spec(flagship(Role.RAY_HEAD, "node-a", "10.0.0.1", 0))

    serve = (
        "--model /models/DeepSeek-R1 --served-model-name deepseek-r1 --host 127.0.0.1 --port 30010"
        " --tensor-parallel-size 8 --pipeline-parallel-size 2 --max-model-len 16384 --reasoning-parser deepseek_r1"
        " --allowed-media-domains media.invalid --distributed-executor-backend ray"
    )
    assert head.name == "appliance-vllm-r1-head"
    assert head.entrypoint == ["/bin/bash", "-c"]
    ray = f"ray start --head --node-ip-address=10.0.0.1 --port=6379 {RAY_PORT_FLAGS}"
    assert head.command == [f"{ray} && exec vllm serve {serve}"]
    assert (head.network_mode, head.ipc_mode, head.ports) == ("host", "host", {})
    assert head.container_port == 30010  # host networking: the API listens on the host port itself
    assert head.labels == labels("r1", "node-a", "ray-head")
    assert head.environment == {
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "NVIDIA_VISIBLE_DEVICES": ",".join(gpus(8, node=0)),
        "VLLM_API_KEY": "ek_test",
        "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "0",
        "VLLM_HOST_IP": "10.0.0.1",
        "RAY_NODE_IP_ADDRESS": "10.0.0.1",
        "RAY_OVERRIDE_NODE_IP_ADDRESS": "10.0.0.1",
    }
    assert head.device_requests[0]["DeviceIDs"] == gpus(8, node=0)
    assert "http://127.0.0.1:30010/health" in head.healthcheck["test"][-1]  # type: ignore[index]


def test_flagship_worker_joins_the_heads_ray() -> None:
    [worker] = ENGINE.build_spec(flagship(Role.RAY_WORKER, "node-b", "10.0.0.2", 1))

    assert worker.name == "appliance-vllm-r1-worker1"
    assert worker.entrypoint == ["ray"]
    assert worker.command == [
        *("start", "--block", "--address=10.0.0.1:6379", "--node-ip-address=10.0.0.2"),
        *RAY_PORT_FLAGS.split(),
    ]
    assert (worker.network_mode, worker.ipc_mode, worker.ports, worker.healthcheck) == ("host", "host", {}, None)
    assert (worker.health_path, worker.models_path, worker.metrics_path) == ("", "", None)
    assert worker.labels == labels("r1", "node-b", "ray-worker")
    assert worker.environment["VLLM_HOST_IP"] == "10.0.0.2"
    assert worker.device_requests[0]["DeviceIDs"] == gpus(8, node=1)
    assert worker.volumes == {"/var/lib/appliance/models": {"bind": "/models", "mode": "ro"}}  # same path everywhere


def test_cluster_roles_need_their_addresses() -> None:
    with pytest.raises(EngineError, match="node_ip"):
        request(role="ray-head", tensor_parallel=1)
    with pytest.raises(EngineError, match="ray_head_address"):
        request(role="ray-worker", node_ip="10.0.0.2")


def test_unknown_extra_flag_is_refused_with_the_known_list() -> None:
    with pytest.raises(FlagError) as caught:
        ENGINE.build_spec(request(extra_args=["--swap-space", "4", "--enable-turbo"]))

    # --swap-space was removed before 0.33.0; an engine would exit on it at start-up.
    assert caught.value.unknown == ["--swap-space", "--enable-turbo"]
    assert "--enable-prefix-caching" in caught.value.known and "--max-num-batched-tokens" in caught.value.known
    assert "unknown flags for vllm 0.33.0: --swap-space, --enable-turbo. Known flags: " in str(caught.value)


@pytest.mark.parametrize("args", [["--port", "9000"], ["-tp", "2"], {"max_model_len": 4}, ["--config=x.yaml"]])
def test_flags_the_console_sets_are_refused(args: Any) -> None:
    with pytest.raises(FlagError, match="set by the console") as caught:
        ENGINE.validate_extra_args(args)
    assert caught.value.managed


def test_extra_flags_in_vllms_other_spellings_are_accepted() -> None:
    ENGINE.validate_extra_args(["--max_num_batched_tokens", "8192", "--compilation-config.mode", "3", "-O3"])
    ENGINE.validate_extra_args(["--kv-cache-dtype=fp8", "--no-enable-prefix-caching", "--cpu-offload-gb", "-1"])


def test_a_switch_given_false_is_refused() -> None:
    with pytest.raises(FlagError, match="switch"):
        ENGINE.build_spec(request(extra_args={"--enforce-eager": False}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dtype", "fp16"),
        ("quantization", "bitsandbytes4"),
        ("n_gpu_layers", 20),
        ("gpu_uuids", gpus(2)),  # tensor_parallel is 1
        ("tensor_parallel", 2),  # one GPU given
    ],
)
def test_values_vllm_cannot_run_are_refused(field: str, value: Any) -> None:
    with pytest.raises(EngineError) as caught:
        ENGINE.build_spec(request(**{field: value}))
    assert caught.value.field == field or caught.value.field == "gpu_uuids"


def test_offline_hugging_face_id_reads_the_mounted_cache() -> None:
    req = request(model_path="", hf_model_id="Qwen/Qwen2.5-7B-Instruct", served_model_name="qwen2.5-7b")
    [spec] = ENGINE.build_spec(req)

    assert spec.command[:2] == ["--model", "Qwen/Qwen2.5-7B-Instruct"]
    assert "--reasoning-parser" not in spec.command
    assert spec.environment["HF_HUB_CACHE"] == "/models/hub"
    with pytest.raises(EngineError, match="models_dir"):
        ENGINE.build_spec(request(model_path="", hf_model_id="Qwen/Qwen2.5-7B-Instruct", models_dir=None))


def test_reasoning_parser_can_be_chosen_or_turned_off() -> None:
    [off] = ENGINE.build_spec(request(reasoning_parser=""))
    [qwen3] = ENGINE.build_spec(request(served_model_name="qwen3-8b", model_path="Qwen3-8B", reasoning_parser="qwen3"))
    assert "--reasoning-parser" not in off.command
    assert qwen3.command[-4:-2] == ["--reasoning-parser", "qwen3"]


def test_simulated_node_without_gpus_says_so_to_the_nvidia_runtime() -> None:
    [spec] = ENGINE.build_spec(request(gpu_uuids=[], tensor_parallel=4))
    assert spec.device_requests == []
    assert spec.environment["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_request_env_cannot_override_the_adapters() -> None:
    [spec] = ENGINE.build_spec(request(env={"NCCL_SOCKET_IFNAME": "eth1"}))
    assert spec.environment["NCCL_SOCKET_IFNAME"] == "eth1"
    with pytest.raises(EngineError, match="HF_HUB_OFFLINE"):
        ENGINE.build_spec(request(env={"HF_HUB_OFFLINE": "0"}))


def test_head_command_quotes_what_it_passes_to_the_shell() -> None:
    req = flagship(Role.RAY_HEAD, "node-a", "10.0.0.1", 0)
    req = request(**{**req.__dict__, "served_model_name": "r1; rm -rf /", "extra_args": {"--chat-template": "a b"}})
    [head] = ENGINE.build_spec(req)
    assert "--served-model-name 'r1; rm -rf /'" in head.command[0]
    assert "--chat-template 'a b'" in head.command[0]

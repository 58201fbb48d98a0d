"""Issue 12: engines accepted any request. Each deployment's engine now requires the console's key
(vLLM and llama.cpp) or, having no authentication at all (Ollama), is published on loopback only."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.engines import (
    EngineError,
    EngineRequest,
    LlamaCppPythonEngine,
    LlamaServerEngine,
    OllamaEngine,
    Role,
    VllmEngine,
)
from appliance.engines.flags import LLAMACPP_IMAGE, OLLAMA_IMAGE, VLLM_IMAGE

KEY = "ek_test-secret-0123456789"


def request(engine: str, **overrides: Any) -> EngineRequest:
    images = {"vllm": VLLM_IMAGE, "ollama": OLLAMA_IMAGE, "llamacpp": LLAMACPP_IMAGE}
    fields: dict[str, Any] = {
        "deployment_id": "d1",
        "console_id": "console1",
        "node_name": "node-a",
        "engine": engine,
        "image": images[engine],
        "served_model_name": "m",
        "model_path": "m.gguf" if engine != "vllm" else "m",
        "host_port": 30001,
        "api_key": KEY,
    }
    return EngineRequest(**(fields | overrides))


@pytest.mark.parametrize(
    ("engine", "req", "variable"),
    [
        (VllmEngine(), request("vllm"), "VLLM_API_KEY"),
        (LlamaServerEngine(), request("llamacpp"), "LLAMA_API_KEY"),
        (LlamaCppPythonEngine(), request("llamacpp"), "API_KEY"),
    ],
)
def test_the_key_reaches_the_engine_in_its_environment_not_its_command_line(
    engine: Any, req: EngineRequest, variable: str
) -> None:
    [spec] = engine.build_spec(req)
    kwargs = spec.to_create_kwargs()
    assert kwargs["environment"][variable] == KEY
    assert KEY not in " ".join(kwargs["command"]) and KEY not in str(kwargs["healthcheck"])
    assert KEY not in repr(req)


def test_a_key_is_required_where_the_engine_can_check_one() -> None:
    for engine, req in ((VllmEngine(), request("vllm")), (LlamaServerEngine(), request("llamacpp"))):
        with pytest.raises(EngineError, match="api_key"):
            engine.build_spec(EngineRequest(**{**req.__dict__, "api_key": ""}))


def test_multi_node_head_requires_the_key_and_workers_have_no_api() -> None:
    cluster = {"node_ip": "10.0.0.1", "tensor_parallel": 1, "pipeline_parallel": 2}
    [head] = VllmEngine().build_spec(request("vllm", role=Role.RAY_HEAD, **cluster))
    assert head.environment["VLLM_API_KEY"] == KEY
    worker = request("vllm", role=Role.RAY_WORKER, ray_head_address="10.0.0.1", node_rank=1, **cluster)
    [spec] = VllmEngine().build_spec(worker)
    assert "VLLM_API_KEY" not in spec.environment


def test_the_python_servers_docker_probe_sends_the_key_from_its_environment() -> None:
    [spec] = LlamaCppPythonEngine().build_spec(request("llamacpp"))
    probe = " ".join(spec.healthcheck["test"]) if spec.healthcheck else ""
    assert "Authorization" in probe and "API_KEY" in probe


@pytest.mark.parametrize("address", ["0.0.0.0", "10.0.0.5", "::"])
def test_ollama_has_no_authentication_so_it_is_published_on_loopback_only(address: str) -> None:
    with pytest.raises(EngineError, match="loopback"):
        OllamaEngine().build_spec(request("ollama", bind_address=address))
    [spec] = OllamaEngine().build_spec(request("ollama", bind_address="127.0.0.1"))
    assert spec.ports == {"11434/tcp": ("127.0.0.1", 30001)}


def test_vllm_fetches_media_only_from_the_departments_domains_and_follows_no_redirect() -> None:
    [spec] = VllmEngine().build_spec(request("vllm"))
    command = spec.command
    at = command.index("--allowed-media-domains")
    assert command[at + 1 :] == ["media.invalid"]  # none listed: a name that never resolves, so nothing is fetched
    assert spec.environment["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    [listed] = VllmEngine().build_spec(request("vllm", allowed_media_domains=("images.example.com", "cdn.example")))
    assert listed.command[listed.command.index("--allowed-media-domains") :] == [
        "--allowed-media-domains",
        "images.example.com",
        "cdn.example",
    ]


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.9"])
def test_a_multi_node_head_serves_on_loopback_or_the_cluster_interface_only(address: str) -> None:
    cluster = {"node_ip": "10.0.0.1", "tensor_parallel": 1, "pipeline_parallel": 2}
    with pytest.raises(EngineError, match="bind_address"):
        VllmEngine().build_spec(request("vllm", role=Role.RAY_HEAD, bind_address=address, **cluster))
    [head] = VllmEngine().build_spec(request("vllm", role=Role.RAY_HEAD, bind_address="10.0.0.1", **cluster))
    assert "--host 10.0.0.1" in head.command[0] and "--include-dashboard=false" in head.command[0]

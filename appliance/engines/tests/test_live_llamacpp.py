"""The llama.cpp spec run for real: created from `to_create_kwargs()`, started, probed, asked a question.

Needs a Docker engine and the appliance/llamacpp-cpu image (deploy/engine-image/); skipped without
either (and a skipped live test fails `make test`).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from appliance.engines import EngineRequest, HealthState, LlamaServerEngine
from appliance.engines.flags import LLAMACPP_IMAGE

docker = pytest.importorskip("docker")

pytestmark = pytest.mark.docker

MODEL = "smollm2-135m-instruct-q4_1"
START_TIMEOUT_S = 120
KEY = f"ek_live-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    try:
        client.images.get(LLAMACPP_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{LLAMACPP_IMAGE} is not built (deploy/engine-image/)")
    yield client
    client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(engine: LlamaServerEngine, base_url: str) -> HealthState:
    deadline = time.monotonic() + START_TIMEOUT_S
    state = HealthState.DOWN
    with httpx.Client(timeout=5.0, headers={"Authorization": f"Bearer {KEY}"}) as client:
        while time.monotonic() < deadline:
            state = engine.health_check(base_url, client, expect_model=MODEL).state
            if state is HealthState.READY:
                break
            time.sleep(1)
    return state


def test_llamacpp_cpu_container_serves_from_its_spec(docker_client: Any) -> None:
    """The CPU image runs llama-server's own command line: the console's spec, extra flags included."""
    engine = LlamaServerEngine()
    req = EngineRequest(
        deployment_id=f"live-{uuid.uuid4().hex[:8]}",
        console_id="engines-test",
        node_name=socket.gethostname()[:63] or "node",
        engine="llamacpp",
        image=LLAMACPP_IMAGE,
        served_model_name=MODEL,
        model_path=f"{MODEL}.gguf",
        models_dir=None,  # the image ships the model
        host_port=free_port(),
        max_model_len=2048,
        threads=2,
        parallel=2,
        extra_args=["--cont-batching", "-fa", "auto", "--cache-type-k", "f16", "--no-webui"],
        api_key=KEY,
    )
    [spec] = engine.build_spec(req)
    container = docker_client.containers.create(**spec.to_create_kwargs())
    try:
        container.start()
        base_url = f"http://127.0.0.1:{req.host_port}"
        state = wait_ready(engine, base_url)
        container.reload()
        assert state is HealthState.READY, container.logs(tail=40).decode(errors="replace")

        host_config = container.attrs["HostConfig"]
        assert container.labels["appliance.deployment"] == req.deployment_id
        assert host_config["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "50m", "max-file": "5"}}
        assert host_config["RestartPolicy"]["Name"] == "no"
        assert container.attrs["Config"]["User"] == "10001:10001"  # the image's non-root user, kept

        body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
        # Locked (issue 12): without the deployment's key the engine refuses to generate.
        refused = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=60)
        assert refused.status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        answer = httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=auth, timeout=60).json()
        assert answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] > 0
        assert answer["model"] == MODEL
        tokenized = httpx.post(f"{base_url}/tokenize", json={"content": "Say hi."}, headers=auth, timeout=10)
        tokens = tokenized.json()["tokens"]
        assert len(tokens) >= 2
        metrics = httpx.get(f"{base_url}/metrics", headers=auth, timeout=10).text
        assert "llamacpp:prompt_tokens_total" in metrics  # --metrics
        assert container.attrs["Config"]["Entrypoint"] == ["/app/llama-server"]
    finally:
        container.remove(force=True)


def test_unknown_flag_stops_the_server_as_upstream_does(docker_client: Any) -> None:
    """llama-server exits with status 1 on an option it does not know, before loading anything."""
    output = b""
    container = docker_client.containers.run(LLAMACPP_IMAGE, ["--no-such-flag", "1"], detach=True)
    try:
        result = container.wait(timeout=60)
        output = container.logs()
    finally:
        container.remove(force=True)
    assert result["StatusCode"] == 1
    assert b"invalid argument: --no-such-flag" in output

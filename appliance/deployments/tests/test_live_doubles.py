"""An Ollama-kind and a vLLM-kind deployment, live: a Celery worker, the Docker engine and the engines'
protocol doubles (deploy/engine-doubles), created through the API, `running`, answering through the
console's /v1 gateway and chat socket, then stopped.

The doubles speak each engine's API and command line but run no model (docs/engines.md says what only the
real images would show). For Ollama the node's worker pushes the GGUF and creates the model itself, as it
must with the real image.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from appliance.deployments import engine_keys
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment, Event, Instance
from appliance.deployments.tests import live
from appliance.deployments.tests.factories import profile_id, smollm2_profile
from appliance.deployments.tests.test_live import _chat, _containers, _gateway, _session_of, _wait_state
from appliance.engines.tests.test_doubles import gguf
from appliance.gpus import services as gpu_services
from appliance.gpus.choices import NodeState
from appliance.gpus.models import GpuUnit, Node
from appliance.images.models import EngineImage, NodeImage

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
NODE = live.node_name()
MODEL = "smollm2-135m-instruct-q4_1"
VLLM_MODEL_DIR = "deepseek-r1-distill-qwen-7b"  # the basic-7b profile's model, as a directory under /models


def _build_doubles() -> dict[str, str]:
    out = subprocess.run(
        [str(live.ROOT / "deploy/engine-doubles/build.sh")], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.split())


def _models_dir(root: Path) -> Path:
    """The SmolLM2 GGUF from the engine image's build cache when there, else a GGUF header (the double reads
    no weights); a vLLM model directory with its config.json."""
    root.mkdir()
    cached = Path(os.environ.get("APPLIANCE_CACHE", "/var/cache/appliance"), "models", f"{MODEL}.gguf")
    if cached.is_file():
        shutil.copyfile(cached, root / f"{MODEL}.gguf")
    else:
        gguf(root / f"{MODEL}.gguf")
    (root / VLLM_MODEL_DIR).mkdir()
    (root / VLLM_MODEL_DIR / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"]}')
    return root


def _remove_ollama_stores() -> None:
    client = docker.from_env()
    for volume in client.volumes.list(filters={"name": f"appliance-ollama-{live.TEST_CONSOLE_ID}-"}):
        volume.remove(force=True)


@pytest.fixture
def console(
    tmp_path: Path, seeded_profiles: None, settings: Any, personas: dict, departments: dict
) -> Iterator[dict[str, Any]]:
    settings.CONSOLE_ID = live.TEST_CONSOLE_ID
    low, high = live.PORT_RANGE.split("-")
    settings.APPLIANCE_PORT_RANGE = (int(low), int(high))
    images = _build_doubles()
    for engine, image in images.items():
        EngineImage.objects.create(engine=engine, image=image)
    models = _models_dir(tmp_path / "models")
    env = {"APPLIANCE_MODELS_DIR": str(models), "APPLIANCE_SIMULATED_GPUS": "2x RTX 4090 24GB"}
    _remove_ollama_stores()
    try:
        with live.console_processes(tmp_path, NODE, **env) as procs:
            live.wait_until(lambda: Node.objects.filter(name=NODE, state=NodeState.READY).exists(), 60, "node ready")
            live.wait_until(lambda: GpuUnit.objects.filter(gpu__node__name=NODE).count() == 2, 60, "2 GPUs")
            live.wait_until(
                lambda: NodeImage.objects.filter(node__name=NODE, tag__in=images.values()).count() == 2, 60, "images"
            )
            ids = list(GpuUnit.objects.filter(gpu__node__name=NODE).values_list("pk", flat=True))
            with transaction.atomic():
                gpu_services.assign_units(personas["root"], ids, departments["eng"].pk)
            yield {"images": images, "procs": procs, "env": env}
    finally:
        _remove_ollama_stores()  # after the containers that use them are gone


def _create(api_as: Any, departments: dict, name: str, profile: int) -> int:
    body = {"name": name, "profile": profile, "department": departments["eng"].pk}
    resp = api_as("alice").post("/api/v1/deployments/", body, format="json")
    assert resp.status_code == 201, resp.content
    return int(resp.json()["id"])


def _answers_through_the_console(model: str, personas: dict) -> None:
    from appliance.chat.models import Message

    _events, done = async_to_sync(_chat)(_session_of(personas["bob"]), model)
    assert done["type"] == "done", done
    answer = Message.objects.get(pk=done["message"]["id"])
    # A reasoning model's double thinks first (vLLM's reasoning_content); a short budget may end there.
    assert (answer.reasoning + answer.content).startswith(("Hello!", "The user wants")), answer.content
    assert answer.completion_tokens
    answers_through_the_gateway(model, personas)


def answers_through_the_gateway(model: str, personas: dict) -> None:
    from appliance.accounts.services import create_api_key

    with transaction.atomic():
        _key, secret = create_api_key(personas["bob"], name=f"doubles-{model}")
    whole, stream_text, _headers = async_to_sync(_gateway)(secret, model)
    assert whole["choices"][0]["message"]["content"].startswith("Hello!")
    assert whole["usage"]["completion_tokens"] == 16  # the gateway's max_tokens: the double stops there
    assert "data: [DONE]" in stream_text and '"Hello!"' in stream_text


def _stop(api_as: Any, dep_id: int) -> None:
    assert api_as("alice").post(f"/api/v1/deployments/{dep_id}/stop/").status_code == 202
    _wait_state(dep_id, State.STOPPED, 60)
    assert _containers(dep_id) == []


def test_ollama_deployment_creates_its_model_runs_answers_and_stops(
    console: dict[str, Any], api_as: Any, departments: dict, personas: dict
) -> None:
    dep_id = _create(api_as, departments, "olla", smollm2_profile("ollama"))
    took = _wait_state(dep_id, State.RUNNING, 120)
    print(f"ollama (double) create→running: {took:.1f} s")
    reasons = list(Event.objects.filter(deployment_id=dep_id).order_by("at", "id").values_list("reason", flat=True))
    assert any(r.startswith(f"pushing {MODEL}.gguf to Ollama as blob sha256:") for r in reasons), reasons
    assert reasons.index("Ollama: success") < reasons.index(f"{MODEL} created in ollama")
    inst = Instance.objects.get(deployment_id=dep_id)
    tags = httpx.get(f"{inst.base_url}/api/tags", timeout=5).json()["models"]
    assert [m["name"] for m in tags] == [f"{MODEL}:latest"]

    _answers_through_the_console(MODEL, personas)
    assert [m["name"] for m in httpx.get(f"{inst.base_url}/api/ps", timeout=5).json()["models"]] == [f"{MODEL}:latest"]
    _stop(api_as, dep_id)

    # Started again: a new container on the same store finds the model there, and pushes nothing.
    assert api_as("alice").post(f"/api/v1/deployments/{dep_id}/start/").status_code == 202
    started = time.monotonic()
    _wait_state(dep_id, State.RUNNING, 120)
    print(f"ollama (double) restart→running: {time.monotonic() - started:.1f} s")
    pushes = Event.objects.filter(deployment_id=dep_id, reason__startswith="pushing ").count()
    assert pushes == 1
    _stop(api_as, dep_id)


def test_vllm_deployment_runs_and_answers_through_the_console(
    console: dict[str, Any], api_as: Any, departments: dict, personas: dict
) -> None:
    dep_id = _create(api_as, departments, "r1-7b", profile_id("basic-7b"))
    took = _wait_state(dep_id, State.RUNNING, 120)
    print(f"vllm (double) create→running: {took:.1f} s")
    [container] = _containers(dep_id)
    args = container.attrs["Config"]["Cmd"]
    assert args[args.index("--model") + 1] == f"/models/{VLLM_MODEL_DIR}"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    model = Deployment.objects.get(pk=dep_id).served_model_name
    inst = Instance.objects.get(deployment_id=dep_id)
    key = engine_keys.headers(dep_id)  # vLLM's /v1 routes want the deployment's engine key
    assert httpx.get(f"{inst.base_url}/v1/models", headers=key, timeout=5).json()["data"][0]["id"] == model
    assert httpx.get(f"{inst.base_url}/v1/models", timeout=5).status_code == 401

    _answers_through_the_console(model, personas)
    metrics = httpx.get(f"{inst.base_url}/metrics", timeout=5).text
    assert f'vllm:generation_tokens_total{{engine="0",model_name="{model}"}}' in metrics
    _stop(api_as, dep_id)


def test_ollamas_refusal_fails_the_deployment_with_its_message(
    console: dict[str, Any], api_as: Any, departments: dict, tmp_path: Path
) -> None:
    (tmp_path / "models" / f"{MODEL}.gguf").write_bytes(b"PK\x03\x04 a zip file, not a GGUF")
    body = {"name": "olla-bad", "profile": smollm2_profile("ollama"), "department": departments["eng"].pk}
    resp = api_as("alice").post("/api/v1/deployments/", {**body, "max_restarts": 0}, format="json")
    assert resp.status_code == 201, resp.content
    dep_id = int(resp.json()["id"])
    _wait_state(dep_id, State.FAILED, 120)
    dep = Deployment.objects.get(pk=dep_id)
    assert dep.state_reason == f"ollama could not create {MODEL}: supplied file was not in GGUF format"
    live.wait_until(lambda: _containers(dep_id) == [], 30, "the failed container removed")


def test_worker_killed_while_creating_the_model_is_taken_over(
    console: dict[str, Any], api_as: Any, departments: dict, tmp_path: Path
) -> None:
    """SIGKILL while the worker holds the model's creation: the next worker's reconciler restarts the lost
    health checks, whose claim takes the silent work over, and the deployment runs with the model made once."""
    procs, env = console["procs"], console["env"]
    live.kill(procs["worker"], signal.SIGKILL)
    procs["worker"] = live.start_worker(NODE, tmp_path, **env, APPLIANCE_FAULT_SLEEP="model_claimed:120")
    dep_id = _create(api_as, departments, "olla-crash", smollm2_profile("ollama"))
    queued = live.wait_until(
        lambda: (
            Instance.objects.filter(deployment_id=dep_id)
            .exclude(model_claim="")
            .values_list("model_claim", flat=True)
            .first()
        ),
        60,
        "the health check's claim",
    )
    live.wait_until(
        lambda: Instance.objects.filter(deployment_id=dep_id).exclude(model_claim=queued).exists(),
        30,
        "the worker's claim",
    )
    live.kill(procs["worker"], signal.SIGKILL)
    procs["worker"] = live.start_worker(NODE, tmp_path, **env)
    took = _wait_state(dep_id, State.RUNNING, 120)
    print(f"ollama (double) worker killed mid-creation → running: {took:.1f} s")
    reasons = list(Event.objects.filter(deployment_id=dep_id).values_list("reason", flat=True))
    assert sum(r.startswith("pushing ") for r in reasons) == 1 and f"{MODEL} created in ollama" in reasons

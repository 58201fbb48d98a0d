"""Flagship placement on two nodes: two Docker engines on this machine, two workers with their own queues.

No GPU exists here, so the nodes carry simulated H20s and the containers run the vLLM protocol double
(deploy/engine-doubles/vllm: `ray start` and `vllm serve` with vLLM's own flag set): the console's real
vLLM specs (Ray head + Ray worker, pipeline parallel across nodes, tensor parallel inside each) are
created, started in order and stopped together by the real workers. Each node has its own address, two
loopback addresses (127.0.0.2 for the head's node, 127.0.0.3 for the other): the worker must join the
head's address, each container must name its own node's, and the console must reach the head there.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from django.db import transaction

from appliance.deployments.choices import State
from appliance.deployments.models import Deployment, Instance
from appliance.deployments.tests import live
from appliance.deployments.tests.factories import profile_id
from appliance.deployments.tests.test_live import _containers, _wait_state
from appliance.deployments.tests.test_live_doubles import _answers_through_the_console
from appliance.gpus import services as gpu_services
from appliance.gpus.choices import NodeState
from appliance.gpus.models import GpuUnit, Node, UnitClaim
from appliance.images.models import EngineImage, NodeImage

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[3]
BASE_IMAGE = "appliance/debian-base:bookworm"
NODES = (live.node_name("a"), live.node_name("b"))
ADDRESSES = {NODES[0]: "127.0.0.2", NODES[1]: "127.0.0.3"}


def _second_engine() -> str:
    out = subprocess.run(
        [str(ROOT / "deploy/docker/ensure-dockerd.sh"), "--name", "node2"],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1].split("=", 1)[1]


def _build_double(host: str | None) -> str:
    """The vLLM double on one engine, from the local base image (saved and loaded there, never pulled)."""
    client = docker.DockerClient(base_url=host) if host else docker.from_env()
    base = docker.from_env().images.get(BASE_IMAGE)
    if not any(image.id == base.id for image in client.images.list(name=BASE_IMAGE)):
        # named=True keeps the repository:tag in the archive; saved by id, the image would load untagged
        # and the build would try to pull FROM from a registry this machine cannot reach.
        client.images.load(b"".join(base.save(named=True)))
    env = {**os.environ, **({"DOCKER_HOST": host} if host else {})}
    out = subprocess.run(
        [str(ROOT / "deploy/engine-doubles/build.sh"), "vllm"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return out.strip().split("=", 1)[1]


def _node_env(node: str, models: Path) -> dict[str, str]:
    address = ADDRESSES[node]
    return {
        "APPLIANCE_SIMULATED_GPUS": "8x H20 96GB",
        "APPLIANCE_NODE_ADDRESS": address,
        "APPLIANCE_ENGINE_BIND_ADDRESS": address,
        "APPLIANCE_MODELS_DIR": str(models),
    }


@pytest.fixture
def two_nodes(tmp_path: Path, seeded_profiles: None, personas: dict, departments: dict, settings: Any) -> Iterator[str]:
    settings.CONSOLE_ID = live.TEST_CONSOLE_ID  # as the workers have it: the engine keys derive from it
    second = _second_engine()
    image = _build_double(None)
    assert _build_double(second) == image
    models = tmp_path / "models"
    (models / "deepseek-r1").mkdir(parents=True)  # the flagship's checkpoint directory, as vLLM is given it
    (models / "deepseek-r1" / "config.json").write_text('{"architectures": ["DeepseekV3ForCausalLM"]}')
    with live.console_processes(tmp_path, NODES[0], **_node_env(NODES[0], models)) as procs:
        procs["worker-b"] = live.start_worker(NODES[1], tmp_path, DOCKER_HOST=second, **_node_env(NODES[1], models))
        live.wait_until(lambda: GpuUnit.objects.filter(gpu__node__name__in=NODES).count() == 16, 90, "16 GPUs")
        live.wait_until(lambda: NodeImage.objects.filter(tag=image).count() == 2, 60, "images on both")
        assert Node.objects.filter(name__in=NODES, state=NodeState.READY).count() == 2
        ids = list(GpuUnit.objects.filter(gpu__node__name__in=NODES).values_list("pk", flat=True))
        with transaction.atomic():
            gpu_services.assign_units(personas["root"], ids, departments["eng"].pk)
        EngineImage.objects.create(engine="vllm", image=image)
        try:
            yield second
        finally:
            live.kill(procs.pop("worker-b"))
            for c in docker.DockerClient(base_url=second).containers.list(
                all=True, ignore_removed=True, filters={"label": f"appliance.console={live.TEST_CONSOLE_ID}"}
            ):
                c.remove(force=True)


def test_flagship_on_two_nodes(two_nodes: str, api_as: Any, departments: dict, personas: dict) -> None:
    body = {"name": "r1", "profile": profile_id("flagship-671b"), "department": departments["eng"].pk}
    resp = api_as("alice").post("/api/v1/deployments/", body, format="json")
    assert resp.status_code == 201, resp.content
    dep_id = resp.json()["id"]
    took = _wait_state(dep_id, State.RUNNING, 120)
    print(f"flagship (vLLM double, 2 nodes) create→running: {took:.1f} s")

    head = Instance.objects.get(deployment_id=dep_id, role="ray-head")
    worker = Instance.objects.get(deployment_id=dep_id, role="ray-worker")
    assert {head.node.name, worker.node.name} == set(NODES)
    head_ip, worker_ip = ADDRESSES[head.node.name], ADDRESSES[worker.node.name]
    assert (head.endpoint_host, worker.endpoint_host) == (head_ip, worker_ip)
    assert UnitClaim.objects.filter(deployment_id=dep_id).count() == 16
    engines = {NODES[0]: docker.from_env(), NODES[1]: docker.DockerClient(base_url=two_nodes)}
    head_c = engines[head.node.name].containers.get(head.container_name)
    worker_c = engines[worker.node.name].containers.get(worker.container_name)
    assert head_c.attrs["Created"] < worker_c.attrs["Created"]  # the head first, then the worker joins it
    assert head_c.attrs["HostConfig"]["NetworkMode"] == worker_c.attrs["HostConfig"]["NetworkMode"] == "host"
    # The worker joins the head's address and names its own; each container pins Ray and vLLM to its node.
    joins = ["start", "--block", f"--address={head_ip}:6379", f"--node-ip-address={worker_ip}"]
    assert worker_c.attrs["Config"]["Cmd"][:4] == joins  # then Ray's pinned ports
    assert f"VLLM_HOST_IP={head_ip}" in head_c.attrs["Config"]["Env"]
    assert f"VLLM_HOST_IP={worker_ip}" in worker_c.attrs["Config"]["Env"]
    ray, _, serve = head_c.attrs["Config"]["Cmd"][0].partition(" && exec vllm serve ")
    assert ray.startswith(f"ray start --head --node-ip-address={head_ip} --port=6379 ")
    argv = shlex.split(serve)
    assert argv[argv.index("--host") + 1] == head_ip
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"
    # The head's API listens on its node's address only, and the console reaches it there.
    assert httpx.get(f"http://{head_ip}:{head.host_port}/health", timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{head.host_port}/health", timeout=5)
    _answers_through_the_console(Deployment.objects.get(pk=dep_id).served_model_name, personas)

    assert api_as("alice").post(f"/api/v1/deployments/{dep_id}/stop/").status_code == 202
    _wait_state(dep_id, State.STOPPED, 60)
    assert _containers(dep_id) == []
    assert (
        docker.DockerClient(base_url=two_nodes).containers.list(
            all=True, ignore_removed=True, filters={"label": f"appliance.deployment={dep_id}"}
        )
        == []
    )
    assert not UnitClaim.objects.exists()

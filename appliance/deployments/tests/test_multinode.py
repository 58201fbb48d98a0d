"""Flagship placement on two nodes: two Docker engines on this machine, two workers with their own queues.

No GPU exists here, so the nodes carry simulated H20s and the containers run a stand-in image with fake
`ray` and `vllm` commands (tests/fake_vllm): the console's real vLLM specs (Ray head + Ray worker,
pipeline parallel across nodes, tensor parallel inside each) are created, started in order and stopped
together by the real workers.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from django.db import transaction

from appliance.deployments.choices import State
from appliance.deployments.models import EngineImage, Instance, NodeImage
from appliance.deployments.tests import live
from appliance.deployments.tests.factories import profile_id
from appliance.deployments.tests.test_live import _containers, _wait_state
from appliance.gpus import services as gpu_services
from appliance.gpus.choices import NodeState
from appliance.gpus.models import GpuUnit, Node, UnitClaim

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[3]
FAKE_IMAGE = "appliance-test/fake-vllm:1"
BASE_IMAGE = "appliance/debian-base:bookworm"
NODES = (live.node_name("a"), live.node_name("b"))


def _second_engine() -> str:
    out = subprocess.run(
        [str(ROOT / "deploy/docker/ensure-dockerd.sh"), "--name", "node2"],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1].split("=", 1)[1]


def _build_fake_image(host: str | None) -> None:
    client = docker.DockerClient(base_url=host) if host else docker.from_env()
    base = docker.from_env().images.get(BASE_IMAGE)
    if not any(image.id == base.id for image in client.images.list(name=BASE_IMAGE)):
        # named=True keeps the repository:tag in the archive; saved by id, the image would load untagged
        # and the build would try to pull FROM from a registry this machine cannot reach.
        client.images.load(b"".join(base.save(named=True)))
    client.images.build(path=str(Path(__file__).parent / "fake_vllm"), tag=FAKE_IMAGE, rm=True)


@pytest.fixture
def two_nodes(tmp_path: Path, seeded_profiles: None, personas: dict, departments: dict, settings: Any) -> Iterator[str]:
    second = _second_engine()
    _build_fake_image(None)
    _build_fake_image(second)
    env = {"APPLIANCE_SIMULATED_GPUS": "8x H20 96GB"}
    with live.console_processes(tmp_path, NODES[0], **env) as procs:
        procs["worker-b"] = live.start_worker(NODES[1], tmp_path, DOCKER_HOST=second, **env)
        live.wait_until(lambda: GpuUnit.objects.filter(gpu__node__name__in=NODES).count() == 16, 90, "16 GPUs")
        live.wait_until(lambda: NodeImage.objects.filter(tag=FAKE_IMAGE).count() == 2, 60, "images on both")
        assert Node.objects.filter(name__in=NODES, state=NodeState.READY).count() == 2
        ids = list(GpuUnit.objects.filter(gpu__node__name__in=NODES).values_list("pk", flat=True))
        with transaction.atomic():
            gpu_services.assign_units(personas["root"], ids, departments["eng"].pk)
        EngineImage.objects.create(engine="vllm", image=FAKE_IMAGE)
        try:
            yield second
        finally:
            live.kill(procs.pop("worker-b"))
            for c in docker.DockerClient(base_url=second).containers.list(
                all=True, ignore_removed=True, filters={"label": f"appliance.console={live.TEST_CONSOLE_ID}"}
            ):
                c.remove(force=True)


def test_flagship_on_two_nodes(two_nodes: str, api_as: Any, departments: dict) -> None:
    body = {"name": "r1", "profile": profile_id("flagship-671b"), "department": departments["eng"].pk}
    resp = api_as("alice").post("/api/v1/deployments/", body, format="json")
    assert resp.status_code == 201, resp.content
    dep_id = resp.json()["id"]
    _wait_state(dep_id, State.RUNNING, 120)

    head = Instance.objects.get(deployment_id=dep_id, role="ray-head")
    worker = Instance.objects.get(deployment_id=dep_id, role="ray-worker")
    assert {head.node.name, worker.node.name} == set(NODES)
    assert UnitClaim.objects.filter(deployment_id=dep_id).count() == 16
    engines = {NODES[0]: docker.from_env(), NODES[1]: docker.DockerClient(base_url=two_nodes)}
    head_c = engines[head.node.name].containers.get(head.container_name)
    worker_c = engines[worker.node.name].containers.get(worker.container_name)
    assert head_c.attrs["Created"] < worker_c.attrs["Created"]  # the head first, then the worker joins it
    assert head_c.attrs["HostConfig"]["NetworkMode"] == worker_c.attrs["HostConfig"]["NetworkMode"] == "host"
    assert worker_c.attrs["Config"]["Cmd"] == [
        "start",
        "--block",
        "--address=127.0.0.1:6379",
        "--node-ip-address=127.0.0.1",
    ]
    argv = json.loads(httpx.get(f"{head.base_url}/argv", timeout=5).text)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"

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

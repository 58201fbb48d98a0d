"""End to end on real parts: a Celery worker process, the Docker engine and the SmolLM2 llama.cpp image.

create → running → the engine answers a chat completion → stop → container gone and units free;
a container killed from outside → failed; a worker killed mid-launch → exactly one container.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import transaction
from rest_framework.test import APIClient

from appliance.audit.models import AuditRecord
from appliance.audit.services import verify_chain
from appliance.deployments.choices import State
from appliance.deployments.consumers import LogsConsumer
from appliance.deployments.engine_keys import engine_key
from appliance.deployments.models import Deployment, Event, Instance, PortLease
from appliance.deployments.tests import live
from appliance.deployments.tests.factories import profile_id
from appliance.gpus.choices import NodeState
from appliance.gpus.models import Node, UnitClaim
from appliance.images.models import NodeImage

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
NODE = live.node_name()


@pytest.fixture(autouse=True)
def _engine_ready(settings: Any) -> None:
    live.require_engine(settings)


@pytest.fixture
def console(tmp_path: Path, seeded_profiles: None) -> Iterator[dict[str, Any]]:
    with live.console_processes(tmp_path, NODE) as procs:
        live.wait_until(lambda: Node.objects.filter(name=NODE, state=NodeState.READY).exists(), 60, "node ready")
        live.wait_until(
            lambda: NodeImage.objects.filter(node__name=NODE, tag=live.engine_image()).exists(),
            60,
            "the node's image list",
        )
        yield procs


def _create(api: APIClient, departments: dict, name: str, **extra: Any) -> int:
    body = {"name": name, "profile": profile_id("smollm2-cpu"), "department": departments["eng"].pk, **extra}
    resp = api.post("/api/v1/deployments/", body, format="json")
    assert resp.status_code == 201, resp.content
    return int(resp.json()["id"])


def _state(dep_id: int) -> str:
    return str(Deployment.objects.get(pk=dep_id).state)


def _wait_state(dep_id: int, state: str, timeout: float) -> float:
    start = time.monotonic()
    try:
        live.wait_until(lambda: _state(dep_id) == state, timeout, f"deployment {dep_id} {state}")
    except AssertionError as exc:
        events = list(Event.objects.filter(deployment_id=dep_id).order_by("at", "id").values_list("to_state", "reason"))
        raise AssertionError(f"{exc}; it is {_state(dep_id)}; events: {events}") from None
    return time.monotonic() - start


def _containers(dep_id: int) -> list[Any]:
    return docker.from_env().containers.list(
        all=True,
        ignore_removed=True,
        filters={"label": [f"appliance.console={live.TEST_CONSOLE_ID}", f"appliance.deployment={dep_id}"]},
    )


async def _follow_logs(user: Any, dep_id: int) -> str:
    """The deployment page's live log socket, as that user (a member of the department may watch)."""
    communicator = WebsocketCommunicator(LogsConsumer.as_asgi(), f"/ws/deployments/{dep_id}/logs/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"pk": dep_id}}
    connected, _ = await communicator.connect()
    if not connected:
        return "refused"
    message = await communicator.receive_json_from(timeout=15)
    await communicator.disconnect()
    return str(message.get("text", ""))


def test_create_chat_stop(console: dict, api_as: Any, departments: dict, personas: dict) -> None:
    api = api_as("alice")
    dep_id = _create(api, departments, "smol")
    took = _wait_state(dep_id, State.RUNNING, 180)
    print(f"create→running: {took:.1f} s")
    inst = Instance.objects.get(deployment_id=dep_id)
    body = {
        "model": "smollm2-135m-instruct-q4_1",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    url = f"{inst.base_url}/v1/chat/completions"
    assert httpx.post(url, timeout=60, json=body).status_code == 401  # the engine is locked to the console's key
    resp = httpx.post(url, timeout=60, json=body, headers={"Authorization": f"Bearer {engine_key(dep_id)}"})
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"].strip()
    logs = api.get(f"/api/v1/deployments/{dep_id}/logs/?lines=50").json()["instances"]
    assert "listening on" in logs[0]["text"], logs  # llama-server's start-up line
    assert "listening on" in async_to_sync(_follow_logs)(personas["bob"], dep_id)
    assert async_to_sync(_follow_logs)(personas["charlie"], dep_id) == "refused"
    started = time.monotonic()
    assert api.post(f"/api/v1/deployments/{dep_id}/stop/").status_code == 202
    _wait_state(dep_id, State.STOPPED, 60)
    print(f"stop: {time.monotonic() - started:.1f} s")
    assert _containers(dep_id) == []
    assert not PortLease.objects.exists() and not UnitClaim.objects.exists()
    resp = api.post(f"/api/v1/deployments/{dep_id}/stop/")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "already_stopped"
    events = [e["to_state"] for e in reversed(api.get(f"/api/v1/deployments/{dep_id}/events/").json()["results"])]
    assert events == ["pending", "scheduled", "creating", "starting", "running", "stopping", "stopped"]
    # The worker's audit records carry the request id of the API call that queued its work.
    created = AuditRecord.objects.get(action="deployment.create", target_id=str(dep_id))
    by_worker = AuditRecord.objects.get(action="deployment.creating", target_id=str(dep_id))
    assert by_worker.via == "task" and by_worker.request_id == created.request_id != ""
    assert verify_chain().ok


def test_orphan_container_is_removed_and_audited(console: dict) -> None:
    orphan = docker.from_env().containers.create(
        live.engine_image(),
        name=f"{live.TEST_CONSOLE_ID}-orphan",
        labels={"appliance.console": live.TEST_CONSOLE_ID, "appliance.node": NODE, "appliance.deployment": "999"},
    )
    live.wait_until(
        # sparse: no inspect of each listed container, which fails when the reconciler removes it in between
        lambda: not docker.from_env().containers.list(all=True, sparse=True, filters={"id": orphan.id}),
        30,
        "the orphan removed",
    )
    rec = AuditRecord.objects.get(action="container.orphan_removed")
    assert rec.after is not None
    assert rec.target_label == orphan.name and rec.after["container_id"] == orphan.id


def test_container_killed_from_outside_fails(console: dict, api_as: Any, departments: dict) -> None:
    dep_id = _create(api_as("alice"), departments, "smol-kill", max_restarts=0)
    _wait_state(dep_id, State.RUNNING, 180)
    _containers(dep_id)[0].kill()
    took = _wait_state(dep_id, State.FAILED, 30)
    print(f"killed→failed: {took:.1f} s")
    dep = Deployment.objects.get(pk=dep_id)
    assert "died" in dep.state_reason and "exit code 137" in dep.state_reason
    live.wait_until(lambda: not PortLease.objects.filter(instance__deployment_id=dep_id).exists(), 30, "ports released")


@pytest.mark.parametrize("window", ["before_create", "after_create"])
def test_worker_killed_mid_launch_leaves_one_container(
    window: str, tmp_path: Path, seeded_profiles: None, api_as: Any, departments: dict
) -> None:
    """SIGKILL while the worker sleeps at a fault point: before the container exists, the relaunch creates
    it; after, the relaunch adopts the very container the dead worker made (same id, an "adopted" event)."""
    with live.console_processes(tmp_path, NODE, APPLIANCE_FAULT_SLEEP=f"{window}:120") as procs:
        live.wait_until(lambda: NodeImage.objects.filter(node__name=NODE).exists(), 60, "node ready")
        dep_id = _create(api_as("alice"), departments, "smol-crash")
        if window == "after_create":
            live.wait_until(lambda: len(_containers(dep_id)) == 1, 60, "container created")
            made_before = _containers(dep_id)[0].id
        else:
            live.wait_until(
                lambda: Instance.objects.filter(deployment_id=dep_id, state=State.CREATING).exists(), 60, "launch"
            )
            time.sleep(2)  # well inside the 120 s sleep before the create
            assert _containers(dep_id) == []
        assert _state(dep_id) == State.CREATING
        live.kill(procs["worker"], signal.SIGKILL)
        procs["worker"] = live.start_worker(NODE, tmp_path)
        _wait_state(dep_id, State.RUNNING, 180)
        [container] = _containers(dep_id)
        assert Instance.objects.get(deployment_id=dep_id).container_id == container.id
        reasons = list(Event.objects.filter(deployment_id=dep_id).values_list("reason", flat=True))
        assert any(r.endswith("unfinished after 5 s (worker died?); launching again") for r in reasons), (
            reasons
        )  # the reconciler relaunched it
        adopted = [r for r in reasons if r.startswith("adopted container")]
        if window == "after_create":
            assert container.id == made_before
            assert adopted == [
                f"adopted container {container.name} ({container.id[:12]}) on {NODE}, "
                "made by an earlier launch that did not finish"
            ]
        else:
            assert adopted == []


def _squat(port: int) -> socket.socket:
    squatter = socket.socket()
    # Earlier tests' engines served on this port: their closed connections linger in TIME_WAIT, which
    # refuses a plain bind although nothing listens there (the console's own check tolerates them too).
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    return squatter


def test_busy_host_port_is_skipped(console: dict, api_as: Any, departments: dict) -> None:
    first = int(live.PORT_RANGE.split("-")[0])
    squatter = _squat(first)
    try:
        dep_id = _create(api_as("alice"), departments, "smol-port")
        _wait_state(dep_id, State.RUNNING, 180)
        assert Instance.objects.get(deployment_id=dep_id).host_port == first + 1
        assert Event.objects.filter(deployment_id=dep_id, reason__contains=f"host port {first} is in use").exists()
    finally:
        squatter.close()


def test_port_taken_during_launch_is_a_clear_failure(
    tmp_path: Path, seeded_profiles: None, api_as: Any, departments: dict
) -> None:
    first = int(live.PORT_RANGE.split("-")[0])
    with live.console_processes(tmp_path, NODE, APPLIANCE_FAULT_SLEEP="after_create:4"):
        live.wait_until(lambda: NodeImage.objects.filter(node__name=NODE).exists(), 60, "node ready")
        dep_id = _create(api_as("alice"), departments, "smol-race", max_restarts=0)
        live.wait_until(lambda: len(_containers(dep_id)) == 1, 60, "container created")
        squatter = _squat(first)  # taken between the worker's port check and the container's start
        try:
            _wait_state(dep_id, State.FAILED, 60)
            reason = Deployment.objects.get(pk=dep_id).state_reason
            assert "host port clash" in reason and f"127.0.0.1:{first}" in reason, reason
            live.wait_until(lambda: _containers(dep_id) == [], 30, "failed container removed")
            live.wait_until(lambda: not PortLease.objects.exists(), 30, "port lease released")
        finally:
            squatter.close()


async def _chat(session_cookie: str, model: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A browser's chat socket through the whole ASGI stack (origin check, session auth, consumer)."""
    from console.asgi import application

    headers = [
        (b"cookie", f"sessionid={session_cookie}".encode()),
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
    ]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=10))["type"] == "ready"
    await communicator.send_json_to(
        {"type": "send", "content": "Say hello.", "model": model, "max_tokens": 24, "task": "conversation"}
    )
    events: list[dict[str, Any]] = []
    while True:
        event = await communicator.receive_json_from(timeout=60)
        events.append(event)
        if event["type"] in ("done", "error"):
            break
    await communicator.disconnect()
    return events, event


async def _gateway(secret: str, model: str) -> tuple[dict[str, Any], str, dict[str, str]]:
    from django.test import AsyncClient

    client = AsyncClient()
    auth = {"Authorization": f"Bearer {secret}"}
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]}
    whole = await client.post("/v1/chat/completions", body, content_type="application/json", headers=auth)
    assert whole.status_code == 200, whole.content
    streamed = await client.post(
        "/v1/chat/completions", {**body, "stream": True}, content_type="application/json", headers=auth
    )
    assert streamed.status_code == 200
    text = b"".join([chunk async for chunk in streamed.streaming_content]).decode()  # type: ignore[attr-defined]
    return whole.json(), text, dict(whole.headers)


def test_chat_and_gateway_through_the_live_deployment(
    console: dict, api_as: Any, bearer_for: Any, departments: dict, personas: dict
) -> None:
    from django.test import Client

    from appliance.accounts.models import ApiKey
    from appliance.accounts.services import create_api_key
    from appliance.chat.models import Message
    from appliance.quotas.models import UsageRecord

    dep_id = _create(api_as("alice"), departments, "smol-chat")
    _wait_state(dep_id, State.RUNNING, 180)
    model = Deployment.objects.get(pk=dep_id).served_model_name

    browser = Client()
    browser.force_login(personas["bob"])
    events, done = async_to_sync(_chat)(browser.cookies["sessionid"].value, model)
    assert done["type"] == "done", done
    assert any(e["type"] == "delta" for e in events)
    answer = Message.objects.get(pk=done["message"]["id"])
    assert answer.content.strip() and answer.completion_tokens
    assert async_to_sync(_chat)(_session_of(personas["charlie"]), model)[1]["code"] == "model_unavailable"

    with transaction.atomic():
        _key, secret = create_api_key(personas["bob"], name="integration")
    whole, stream_text, headers = async_to_sync(_gateway)(secret, model)
    assert whole["choices"][0]["message"]["content"].strip() and whole["usage"]["completion_tokens"] > 0
    assert "data: [DONE]" in stream_text and '"delta"' in stream_text
    assert float(headers["X-Console-Overhead-Ms"]) >= 0
    assert ApiKey.objects.get(name="integration").last_used_at is not None
    live.wait_until(
        lambda: UsageRecord.objects.filter(api_key__name="integration").count() == 2,
        30,
        "usage records of the two gateway requests",
    )


def _session_of(user: Any) -> str:
    from django.test import Client

    browser = Client()
    browser.force_login(user)
    return browser.cookies["sessionid"].value

"""On-demand deployments live: a Celery worker and beat, the Docker engine and the CPU engine image (SmolLM2).

idle → the beat's idle check stops it (container removed, port released, audited); concurrent /v1
requests start it once and get the answer; the chat shows "starting the model…" and then answers;
with no patience left, a 503 with Retry-After while the start goes on. Idleness is simulated by
setting the last use back in time; everything else runs as in production.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.utils import timezone

from appliance.audit.models import AuditRecord
from appliance.deployments import lastuse
from appliance.deployments.choices import Desired, State
from appliance.deployments.models import Deployment, Event, PortLease
from appliance.deployments.tests import live
from appliance.deployments.tests.test_live import _containers, _create, _session_of, _wait_state
from appliance.gateway.tests.conftest import _console
from appliance.gpus.choices import NodeState
from appliance.gpus.models import Node
from appliance.images.models import NodeImage

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
NODE = live.node_name("od")


@pytest.fixture(autouse=True)
def _engine_ready(settings: Any) -> None:
    live.require_engine(settings)


@pytest.fixture
def console(tmp_path: Path, seeded_profiles: None, monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[str]:
    """Worker and beat (idle check every 2 s), and the console (manage.py serve) serving /v1 with them (the
    same broker, Redis and console id: its last-use keys are the beat's); yields its URL."""
    monkeypatch.setenv("APPLIANCE_IDLE_CHECK_SECONDS", "2")
    web = {
        "CONSOLE_ID": live.TEST_CONSOLE_ID, "CELERY_BROKER_URL": live.BROKER_URL, "REDIS_URL": settings.REDIS_URL,
        "APPLIANCE_DEFAULT_QUEUE": live.DEFAULT_QUEUE, "APPLIANCE_PORT_RANGE": live.PORT_RANGE,
    }  # fmt: skip
    with live.console_processes(tmp_path, NODE), _console(tmp_path / "console.log", **web) as gateway:
        live.wait_until(lambda: Node.objects.filter(name=NODE, state=NodeState.READY).exists(), 60, "node ready")
        live.wait_until(
            lambda: NodeImage.objects.filter(node__name=NODE, tag=live.engine_image()).exists(), 60, "images"
        )
        yield gateway


def _idle_stop(dep_id: int) -> float:
    """Make the deployment look unused for two minutes and wait for the beat to stop it; the seconds it took."""
    Deployment.objects.filter(pk=dep_id).update(state_changed_at=timezone.now() - timedelta(minutes=2))
    started = time.monotonic()

    def stopped() -> bool:
        # Re-set each time: a touch still in flight from the last request must not count as a new use.
        Deployment.objects.filter(pk=dep_id, state=State.RUNNING).update(last_used_at=None)
        lastuse.record(dep_id, timezone.now() - timedelta(minutes=2))
        return Deployment.objects.get(pk=dep_id).state == State.STOPPED

    live.wait_until(stopped, 60, f"deployment {dep_id} stopped for idleness")
    return time.monotonic() - started


def _burst(gateway: str, secret: str, model: str, count: int) -> list[tuple[int, float, dict[str, str], Any]]:
    """``count`` requests at once from as many clients, each with its status, wall time, headers and body."""

    def one(i: int) -> tuple[int, float, dict[str, str], Any]:
        body = {"model": model, "max_tokens": 12, "messages": [{"role": "user", "content": f"Say hello {i}."}]}
        started = time.monotonic()
        response = httpx.post(
            f"{gateway}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=300
        )
        return response.status_code, time.monotonic() - started, dict(response.headers), response.json()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


async def _one_in_process(secret: str, model: str) -> tuple[int, dict[str, str], Any]:
    """One request through Django's handler in this process (whose settings a test may change)."""
    from django.test import AsyncClient

    body = {"model": model, "max_tokens": 12, "messages": [{"role": "user", "content": "Say hello."}]}
    response = await AsyncClient().post(
        "/v1/chat/completions", body, content_type="application/json", headers={"Authorization": f"Bearer {secret}"}
    )
    return response.status_code, dict(response.headers), response.json()


async def _chat_events(session_cookie: str, model: str) -> tuple[list[dict[str, Any]], float | None]:
    """The browser's socket: send a message, collect events to the end; seconds to the first delta."""
    from console.asgi import application

    headers = [(b"cookie", f"sessionid={session_cookie}".encode()), (b"origin", b"http://localhost"),
               (b"host", b"localhost")]  # fmt: skip
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    assert (await socket.connect())[0]
    await socket.receive_json_from(timeout=10)
    started, first = time.monotonic(), None
    await socket.send_json_to({"type": "send", "content": "Say hello.", "model": model, "max_tokens": 16})
    events: list[dict[str, Any]] = []
    while not events or events[-1]["type"] not in ("done", "error"):
        events.append(await socket.receive_json_from(timeout=180))
        if events[-1]["type"] == "delta" and first is None:
            first = time.monotonic() - started
    await socket.disconnect()
    return events, first


def test_idle_stop_then_requests_start_it(console: str, api_as: Any, departments: dict, personas: dict) -> None:
    from appliance.accounts.services import create_api_key

    dep_id = _create(api_as("alice"), departments, "smol-od", on_demand=True, idle_minutes=1)
    _wait_state(dep_id, State.RUNNING, 180)
    model = Deployment.objects.get(pk=dep_id).served_model_name

    took = _idle_stop(dep_id)
    print(f"idle stop (beat every 2 s → stopped): {took:.1f} s")
    dep = Deployment.objects.get(pk=dep_id)
    assert (dep.desired, dep.on_demand) == (Desired.IDLE, True)
    assert _containers(dep_id) == [] and not PortLease.objects.exists()
    stopping = AuditRecord.objects.get(action="deployment.stopping", target_id=str(dep_id))
    assert stopping.actor_id is None and "no request for" in (stopping.after or {})["reason"]
    assert AuditRecord.objects.filter(action="deployment.stopped", target_id=str(dep_id)).exists()

    with transaction.atomic():
        _key, secret = create_api_key(personas["bob"], name="on-demand")
    burst = _burst(console, secret, model, 4)
    assert [status for status, *_ in burst] == [200] * 4, burst
    assert all(body["choices"][0]["message"]["content"].strip() for *_, body in burst)
    walls = sorted(wall for _s, wall, _h, _b in burst)
    colds = sorted(float(h["x-console-cold-start-ms"]) for _s, _w, h, _b in burst)
    print(f"cold start seen by 4 concurrent first /v1 requests: wall {walls[0]:.2f}–{walls[-1]:.2f} s, "
          f"waiting for the start {colds[0] / 1000:.2f}–{colds[-1] / 1000:.2f} s")  # fmt: skip
    assert Event.objects.filter(deployment_id=dep_id, to_state=State.SCHEDULED).count() == 2  # create + one start
    assert len(_containers(dep_id)) == 1
    woken = Event.objects.filter(deployment_id=dep_id, to_state=State.SCHEDULED).latest("at", "id")
    start = list(Event.objects.filter(deployment_id=dep_id, at__gte=woken.at).order_by("at", "id"))
    steps = " → ".join(f"{e.to_state} +{(e.at - woken.at).total_seconds():.2f} s" for e in start)
    print(f"the start's steps: {steps}")
    warm = sorted(wall for _s, wall, _h, _b in _burst(console, secret, model, 4))
    print(f"the same 4 requests once it runs: wall {warm[0]:.2f}–{warm[-1]:.2f} s")

    _idle_stop(dep_id)
    events, first_delta = async_to_sync(_chat_events)(_session_of(personas["bob"]), model)
    starting = [e for e in events if e["type"] == "status"]
    assert starting and starting[0]["status"] == "starting", events
    assert events[-1]["type"] == "done" and events[-1]["message"]["status"] == "complete", events[-1]
    print(f"chat: first words {first_delta:.2f} s after sending to a stopped model; {len(starting)} status events")

    _idle_stop(dep_id)
    with pytest.MonkeyPatch.context() as patch:
        from django.conf import settings

        patch.setattr(settings, "APPLIANCE_ON_DEMAND_WAIT_SECONDS", 0)
        status, headers, body = async_to_sync(_one_in_process)(secret, model)
    assert status == 503 and headers["Retry-After"] == "10" and body["error"]["code"] == "model_starting", body
    _wait_state(dep_id, State.RUNNING, 180)  # the start went on without the client
    [(status, _wall, headers, _body)] = _burst(console, secret, model, 1)
    assert status == 200 and "x-console-cold-start-ms" not in headers

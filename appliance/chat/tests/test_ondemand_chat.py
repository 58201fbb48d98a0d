"""A chat message for an on-demand model that is not running: it is offered in the model list, the
message starts it, the tabs see "starting the model… (elapsed)", then the answer streams. This process
plays the node's worker (the lifecycle's own functions, the fake engine as the container)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from rest_framework.test import APIClient

from appliance.accounts.models import User
from appliance.catalog.models import ProfileVersion
from appliance.chat.tests.fake_engine import FakeEngine, Script
from appliance.chat.tests.wsclient import joined, open_socket, receive_until, send
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment, Event, Instance
from appliance.deployments.tests.factories import idle_on_demand, play_node_worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def idle(personas: dict[str, User], engine: FakeEngine, seeded_profiles: None) -> Deployment:
    department = personas["alice"].department
    assert department is not None
    version = ProfileVersion.objects.filter(profile__slug="smollm2-cpu").latest("number")
    return idle_on_demand(department, personas["alice"], engine.model, version, "chat-od-node")


def _worker_after(deployment_id: int, port: int, delay: float) -> threading.Thread:
    def run() -> None:
        try:
            deadline = time.monotonic() + 10
            while not Instance.objects.filter(deployment_id=deployment_id).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(delay)
            play_node_worker(deployment_id, port)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_idle_model_is_offered(api_as: Callable[[str], APIClient], idle: Deployment, engine: FakeEngine) -> None:
    models = api_as("carol").get("/api/v1/chat/models/").json()["results"]
    assert [(m["name"], m["status"]) for m in models] == [(engine.model, "idle")]
    assert api_as("charlie").get("/api/v1/chat/models/").json()["results"] == []


@pytest.mark.asyncio
async def test_the_message_starts_the_model_and_the_tab_sees_it_starting(
    personas: dict[str, User], engine: FakeEngine, idle: Deployment
) -> None:
    engine.default = Script(content=["Hello", " there"])
    worker = _worker_after(idle.pk, engine.port, delay=2.5)
    socket = await open_socket(personas["bob"])
    started = await send(socket, engine.model, "hi")
    assert started["type"] == "started", started
    events = await receive_until(socket, "done", "error")
    await socket.disconnect()
    worker.join(5)
    statuses = [e for e in events if e["type"] == "status"]
    assert len(statuses) >= 2 and {e["status"] for e in statuses} == {"starting"}
    elapsed = [e["elapsed"] for e in statuses]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 2
    first_delta = next(i for i, e in enumerate(events) if e["type"] == "delta")
    assert all(e["type"] != "status" for e in events[first_delta:])  # the status gives way to the answer
    assert joined([e for e in events if e["type"] == "delta"]) == "Hello there"
    assert events[-1]["type"] == "done" and events[-1]["message"]["status"] == "complete"
    scheduled = await sync_to_async(Event.objects.filter(deployment=idle, to_state=State.SCHEDULED).count)()
    assert scheduled == 1


@pytest.mark.asyncio
async def test_a_model_that_does_not_start_in_time_fails_the_answer_clearly(
    personas: dict[str, User], engine: FakeEngine, idle: Deployment, settings: Any
) -> None:
    settings.APPLIANCE_ON_DEMAND_WAIT_SECONDS = 1
    socket = await open_socket(personas["bob"])
    await send(socket, engine.model, "hi")
    events = await receive_until(socket, "done", "error")
    await socket.disconnect()
    message = events[-1]["message"]
    assert (message["status"], message["error_code"]) == ("failed", "model_not_started")
    assert (await Deployment.objects.aget(pk=idle.pk)).state == State.SCHEDULED  # it goes on starting

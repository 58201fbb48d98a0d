"""/v1 requests for an on-demand model that is not running: listed, started once by the first requests,
which wait and get the answer; past the wait a 503 with Retry-After. Daphne serves the console; this
process plays the node's worker (the lifecycle's own functions, with a synthetic engine as the container).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from django.db import connection

from appliance.accounts.models import User
from appliance.audit.models import AuditRecord
from appliance.catalog.models import ProfileVersion
from appliance.deployments.choices import Desired, State
from appliance.deployments.models import Deployment, Event, Instance
from appliance.deployments.tests.factories import idle_on_demand, play_node_worker
from appliance.gateway.tests.conftest import CONSOLE_ID, REDIS_URL, _console, wait_for
from appliance.gateway.tests.factories import api_key
from appliance.images.models import NodeImage
from bench.synthetic_upstream import TOKEN, SyntheticUpstream

pytestmark = pytest.mark.django_db(transaction=True)
WAIT_SECONDS, RETRY_AFTER = 4, 7
BODY = {"model": "od", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def gateway(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console with a short start wait, so the 503 comes within the test's patience."""
    log = tmp_path_factory.mktemp("console") / "console-ondemand.log"
    env = {
        "APPLIANCE_ON_DEMAND_WAIT_SECONDS": str(WAIT_SECONDS),
        "APPLIANCE_ON_DEMAND_RETRY_AFTER_SECONDS": str(RETRY_AFTER),
    }
    with _console(log, **env) as base_url:
        yield base_url


@pytest.fixture
def idle(personas: dict[str, User], seeded_profiles: None) -> Deployment:
    """The seeded SmolLM2 CPU profile, deployed on demand for bob's department and idle."""
    department = personas["bob"].department
    assert department is not None
    version = ProfileVersion.objects.filter(profile__slug="smollm2-cpu").latest("number")
    return idle_on_demand(department, personas["root"], "od", version, "gw-od-node")


def _worker_after(deployment_id: int, port: int, delay: float) -> threading.Thread:
    """The node's worker: once the launch is scheduled, the engine takes ``delay`` to load, then serves."""

    def run() -> None:
        try:
            wait_for(lambda: Instance.objects.filter(deployment_id=deployment_id).exists(), 10, "the launch")
            time.sleep(delay)
            play_node_worker(deployment_id, port)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _post(gateway: str, secret: str, **extra: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"}
    return httpx.post(f"{gateway}/v1/chat/completions", json={**BODY, **extra}, headers=headers, timeout=30)


def test_first_request_starts_the_idle_model_and_gets_the_answer(
    gateway: str, idle: Deployment, synthetic: Any, personas: dict[str, User]
) -> None:
    engine: SyntheticUpstream = synthetic(model="od")
    secret = api_key(personas["bob"])
    listed = httpx.get(f"{gateway}/v1/models", headers={"Authorization": f"Bearer {secret}"}, timeout=10).json()
    assert [m["id"] for m in listed["data"]] == ["od"]  # stopped, yet offered
    worker = _worker_after(idle.pk, engine.port, delay=1.0)
    started = time.monotonic()
    response = _post(gateway, secret)
    took = time.monotonic() - started
    worker.join(5)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == TOKEN * 2
    cold_ms = float(response.headers["X-Console-Cold-Start-Ms"])
    assert 1000 <= cold_ms <= took * 1000
    assert float(response.headers["X-Console-Overhead-Ms"]) < cold_ms  # the wait is not counted as overhead
    assert Deployment.objects.get(pk=idle.pk).state == State.RUNNING
    record = AuditRecord.objects.get(action="deployment.scheduled", target_id=str(idle.pk))
    assert record.actor_id == personas["bob"].pk
    # The request was noted as a use of the deployment, for its idle timeout.
    store = redis.Redis.from_url(REDIS_URL)
    key = f"{CONSOLE_ID}:deployments:last-used:{idle.pk}"
    assert wait_for(lambda: store.get(key), 5, "the last-use key")
    again = _post(gateway, secret)
    assert again.status_code == 200 and "X-Console-Cold-Start-Ms" not in again.headers


def test_concurrent_first_requests_start_it_once(
    gateway: str, idle: Deployment, synthetic: Any, personas: dict[str, User]
) -> None:
    engine: SyntheticUpstream = synthetic(model="od")
    secret = api_key(personas["bob"])
    worker = _worker_after(idle.pk, engine.port, delay=1.0)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: _post(gateway, secret, stream=i % 2 == 1), range(8)))
    worker.join(5)
    assert [r.status_code for r in responses] == [200] * 8
    assert all("X-Console-Cold-Start-Ms" in r.headers for r in responses)
    assert Event.objects.filter(deployment_id=idle.pk, to_state=State.SCHEDULED).count() == 1
    assert Instance.objects.filter(deployment_id=idle.pk).count() == 1
    assert engine.stats.requests == 8


def test_past_the_wait_a_503_with_retry_after_while_it_goes_on_starting(
    gateway: str, idle: Deployment, personas: dict[str, User]
) -> None:
    started = time.monotonic()
    response = _post(gateway, api_key(personas["bob"]))
    assert WAIT_SECONDS <= time.monotonic() - started < WAIT_SECONDS + 3
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("model_starting", "service_unavailable")
    assert "was not ready within 4 s" in error["message"]
    assert Deployment.objects.get(pk=idle.pk).state == State.SCHEDULED  # the start goes on for the next try


def test_another_department_neither_sees_nor_starts_it(
    gateway: str, idle: Deployment, personas: dict[str, User]
) -> None:
    secret = api_key(personas["charlie"])
    assert _post(gateway, secret).status_code == 404
    listed = httpx.get(f"{gateway}/v1/models", headers={"Authorization": f"Bearer {secret}"}, timeout=10).json()
    assert listed["data"] == []
    assert Deployment.objects.get(pk=idle.pk).state == State.STOPPED


def test_a_model_that_cannot_be_placed_is_a_503_and_stays_idle(
    gateway: str, idle: Deployment, personas: dict[str, User]
) -> None:
    NodeImage.objects.filter(node__name="gw-od-node").delete()  # the engine image is gone from the node
    response = _post(gateway, api_key(personas["bob"]))
    assert response.status_code == 503 and response.headers["Retry-After"] == str(RETRY_AFTER)
    error = response.json()["error"]
    assert error["code"] == "model_cannot_start" and "is not on node gw-od-node" in error["message"]
    idle.refresh_from_db()
    assert (idle.state, idle.desired) == (State.STOPPED, Desired.IDLE)  # the next request tries again

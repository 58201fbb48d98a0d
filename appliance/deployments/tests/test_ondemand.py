"""On-demand deployments: idle stop (claimed, audited, units and ports released), start by a request
(once, whatever the number of concurrent first requests), what model lists offer, the API and page."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from appliance.audit.models import AuditRecord
from appliance.audit.services import verify_chain
from appliance.core.exceptions import Conflict
from appliance.deployments import lastuse, lifecycle, ondemand, routing, services
from appliance.deployments.choices import Desired, State
from appliance.deployments.models import Deployment, Event, Instance, PortLease
from appliance.deployments.tests.factories import assign_all, profile_id, simulated_node, with_images
from appliance.gpus.models import UnitClaim

pytestmark = pytest.mark.django_db


@pytest.fixture
def node(personas: dict, departments: dict, seeded_profiles: None):
    node = simulated_node("n1")
    assign_all(personas["root"], node, departments["eng"])
    with_images(node)
    return node


def _create(personas: dict, departments: dict, **kw: Any) -> Deployment:
    with transaction.atomic():
        return services.create_deployment(
            personas["alice"], name=kw.pop("name", "od"), profile_id=profile_id("basic-7b"),
            department_id=departments["eng"].pk, on_demand=True, idle_minutes=5, **kw,
        )  # fmt: skip


def _run(dep: Deployment) -> Instance:
    """Drive the launch as the node's worker reports it: created, started, healthy."""
    inst = Instance.objects.get(deployment=dep, state=State.SCHEDULED)
    assert lifecycle.claim_for_launch(inst.pk) is not None
    lifecycle.mark_started(inst.pk, "c0ffee")
    lifecycle.mark_healthy(inst.pk, "healthy")
    assert Deployment.objects.get(pk=dep.pk).state == State.RUNNING
    return inst


def _clear_last_use(*ids: int) -> None:
    for deployment_id in ids:
        lastuse._client().delete(lastuse.key(deployment_id))


def _stopped_by_worker(dep: Deployment) -> None:
    for inst in Instance.objects.filter(deployment=dep):
        lifecycle.mark_stopped(inst.pk, 0)


def test_idle_running_deployment_is_stopped_released_and_audited(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments)
    _run(dep)
    _clear_last_use(dep.pk)
    assert UnitClaim.objects.filter(deployment_id=dep.pk).count() == 2 and PortLease.objects.count() == 1
    assert ondemand.stop_idle_deployments(timezone.now() + timedelta(minutes=4)) == []  # not idle long enough
    assert ondemand.stop_idle_deployments(timezone.now() + timedelta(minutes=6)) == [dep.pk]
    assert ondemand.stop_idle_deployments(timezone.now() + timedelta(minutes=6)) == []  # a second check: claimed
    dep.refresh_from_db()
    assert (dep.state, dep.desired) == (State.STOPPING, Desired.IDLE)
    assert "no request for 6 min (on demand)" in dep.state_reason
    _stopped_by_worker(dep)
    dep.refresh_from_db()
    assert (dep.state, dep.desired) == (State.STOPPED, Desired.IDLE)  # idle: not restarted by mark_stopped
    assert not UnitClaim.objects.filter(deployment_id=dep.pk).exists() and not PortLease.objects.exists()
    actions = list(AuditRecord.objects.filter(target_id=str(dep.pk)).values_list("action", "actor_id"))
    assert ("deployment.stopping", None) in actions and ("deployment.stopped", None) in actions
    assert verify_chain().ok


def test_recent_use_keeps_it_running_and_is_copied_to_the_database(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments)
    _run(dep)
    used = timezone.now() + timedelta(minutes=3)
    lastuse.record(dep.pk, used)
    try:
        assert ondemand.stop_idle_deployments(timezone.now() + timedelta(minutes=7)) == []
        dep.refresh_from_db()
        assert dep.state == State.RUNNING and dep.last_used_at is not None
        assert abs((dep.last_used_at - used).total_seconds()) < 0.01
        assert ondemand.stop_idle_deployments(used + timedelta(minutes=5, seconds=1)) == [dep.pk]
    finally:
        _clear_last_use(dep.pk)


def test_only_on_demand_deployments_a_person_wants_running_are_stopped(node, personas: dict, departments: dict) -> None:
    with transaction.atomic():
        plain = services.create_deployment(
            personas["alice"], name="plain", profile_id=profile_id("basic-7b"), department_id=departments["eng"].pk
        )
    _run(plain)
    _clear_last_use(plain.pk)
    assert ondemand.stop_idle_deployments(timezone.now() + timedelta(days=30)) == []
    assert not ondemand.stop_idle(plain.pk, timedelta(hours=1))  # the claim refuses a deployment not on demand


def test_a_request_starts_an_idle_deployment_once(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments, start=False)
    assert (dep.state, dep.desired) == (State.PENDING, Desired.IDLE)
    assert routing.on_demand_to_start(personas["bob"]) == {dep.served_model_name: [dep.pk]}
    assert routing.on_demand_to_start(personas["charlie"]) == {}  # another department's model
    assert ondemand.wake(dep.pk, personas["bob"], "started on demand: a request")
    assert not ondemand.wake(dep.pk, personas["bob"], "a second request")
    dep.refresh_from_db()
    assert (dep.state, dep.desired) == (State.SCHEDULED, Desired.RUNNING)
    assert UnitClaim.objects.filter(deployment_id=dep.pk).count() == 2
    record = AuditRecord.objects.get(action="deployment.scheduled", target_id=str(dep.pk))
    assert record.actor_id == personas["bob"].pk and "started on demand" in (record.after or {})["reason"]
    assert ondemand.progress([dep.pk]) == ondemand.Progress(ready=False, failed=False, detail="scheduled")
    _run(dep)
    assert ondemand.progress([dep.pk]).ready


def test_a_request_during_the_idle_stop_starts_it_again_once_stopped(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments)
    _run(dep)
    _clear_last_use(dep.pk)
    ondemand.stop_idle_deployments(timezone.now() + timedelta(minutes=6))
    assert ondemand.wake(dep.pk, personas["bob"], "request")
    assert Deployment.objects.get(pk=dep.pk).state == State.STOPPING
    _stopped_by_worker(dep)
    dep.refresh_from_db()
    assert (dep.state, dep.desired) == (State.SCHEDULED, Desired.RUNNING)
    assert Instance.objects.filter(deployment=dep, state=State.SCHEDULED).count() == 1


def test_no_capacity_leaves_it_idle_for_the_next_request(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments, start=False)
    with transaction.atomic():  # a plain deployment takes the pool's two GPUs
        services.create_deployment(
            personas["alice"], name="hog", profile_id=profile_id("basic-7b"), department_id=departments["eng"].pk
        )
    with pytest.raises(Conflict, match="Nothing fits"):
        ondemand.wake_for_request(personas["bob"].pk, (dep.pk,), dep.served_model_name)
    dep.refresh_from_db()
    assert (dep.state, dep.desired) == (State.PENDING, Desired.IDLE)


def test_a_person_stop_keeps_requests_from_starting_it(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments, start=False)
    services.stop_deployment(personas["alice"], dep.pk)
    dep.refresh_from_db()
    assert dep.desired == Desired.STOPPED
    assert routing.on_demand_to_start(personas["bob"]) == {} and routing.model_names(personas["bob"]) == []
    assert not ondemand.wake(dep.pk, personas["bob"], "request")
    assert ondemand.progress([dep.pk]).failed
    services.start_deployment(personas["alice"], dep.pk)
    assert Deployment.objects.get(pk=dep.pk).desired == Desired.RUNNING


def test_progress_of_a_start_that_failed_for_good(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments, max_restarts=0)
    inst = Instance.objects.get(deployment=dep)
    lifecycle.claim_for_launch(inst.pk)
    lifecycle.mark_failed(inst.pk, "container died", exit_code=1)
    state = ondemand.progress([dep.pk])
    assert state.failed and "container died" in state.detail


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_requests_start_it_once(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments, start=False)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def request() -> None:
        try:
            barrier.wait()
            ondemand.wake_for_request(personas["bob"].pk, (dep.pk,), dep.served_model_name)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert Event.objects.filter(deployment=dep, to_state=State.SCHEDULED).count() == 1
    assert Instance.objects.filter(deployment=dep).count() == 1
    assert UnitClaim.objects.filter(deployment_id=dep.pk).count() == 2


def test_api_marks_on_demand(node, api_as: Callable[[str], APIClient], departments: dict) -> None:
    body = {"name": "api-od", "profile": profile_id("basic-7b"), "department": departments["eng"].pk}
    created = api_as("alice").post(
        "/api/v1/deployments/", {**body, "on_demand": True, "idle_minutes": 15, "start": False}, format="json"
    )
    assert created.status_code == 201, created.content
    data = created.json()
    assert (data["on_demand"], data["idle_minutes"], data["desired"], data["last_used_at"]) == (True, 15, "idle", None)
    bad = api_as("alice").post("/api/v1/deployments/", {**body, "name": "x", "idle_minutes": 0}, format="json")
    assert bad.status_code == 400
    url = f"/api/v1/deployments/{data['id']}/on-demand/"
    # A member sees it but may not change it; another department's admin does not see it: both "not found".
    assert api_as("bob").post(url, {"on_demand": False}, format="json").status_code == 404
    assert api_as("dave").post(url, {"on_demand": False}, format="json").status_code == 404
    assert Deployment.objects.get(pk=data["id"]).on_demand
    changed = api_as("alice").post(url, {"on_demand": False, "idle_minutes": 45}, format="json")
    assert changed.status_code == 200, changed.content
    # No longer on demand: a deployment idle for want of use is now simply stopped.
    assert (changed.json()["on_demand"], changed.json()["idle_minutes"], changed.json()["desired"]) == (
        False, 45, "stopped",
    )  # fmt: skip
    assert AuditRecord.objects.filter(action="deployment.on_demand", actor_id__isnull=False).count() == 1


def test_wizard_and_detail_page(node, personas: dict, departments: dict) -> None:
    browser = Client()
    browser.force_login(personas["alice"])
    form = {
        "profile_id": profile_id("basic-7b"), "department_id": departments["eng"].pk, "name": "page-od",
        "replicas": 1, "on_demand": "on", "idle_minutes": 20,
    }  # fmt: skip
    response = browser.post("/deployments/new/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    dep = Deployment.objects.get(name="page-od")
    assert (dep.on_demand, dep.idle_minutes) == (True, 20)
    page = browser.get(f"/deployments/{dep.pk}/").content.decode()
    assert 'data-testid="on-demand-form"' in page and "空闲 20 分钟后停止" in page
    browser.post(f"/deployments/{dep.pk}/on-demand/", {"idle_minutes": 7})  # box unticked: no longer on demand
    dep.refresh_from_db()
    assert (dep.on_demand, dep.idle_minutes) == (False, 7)


def test_idle_check_is_on_the_beat() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["deployments.stop-idle"]
    assert entry["task"] == "deployments.stop_idle"
    assert entry["schedule"] == float(settings.APPLIANCE_IDLE_CHECK_SECONDS)

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from appliance.audit.services import verify_chain
from appliance.core.exceptions import Conflict, InvalidInput
from appliance.deployments import lifecycle, routing, services
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment, Event, Instance, PortLease
from appliance.deployments.tests.factories import assign_all, profile_id, simulated_node, with_images
from appliance.engines.prompt import TemplateCost
from appliance.gpus.models import UnitClaim

pytestmark = pytest.mark.django_db


@pytest.fixture
def node(personas: dict, departments: dict, seeded_profiles: None):
    node = simulated_node("n1")
    assign_all(personas["root"], node, departments["eng"])
    with_images(node)
    return node


def _create(personas: dict, departments: dict, slug: str = "basic-7b", **kw: Any) -> Deployment:
    with transaction.atomic():
        return services.create_deployment(
            personas["alice"],
            name=kw.pop("name", "d1"),
            profile_id=profile_id(slug),
            department_id=departments["eng"].pk,
            **kw,
        )


def test_create_places_on_pool_units_and_leases_a_port(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments)
    assert dep.state == State.SCHEDULED
    inst = Instance.objects.get(deployment=dep)
    assert inst.node == node and inst.host_port == 20000
    assert UnitClaim.objects.filter(deployment_id=dep.pk).count() == 2  # basic: 2 × RTX 4090
    assert inst.gpu_uuids == []  # simulated GPUs get no device requests
    assert [e.to_state for e in Event.objects.filter(deployment=dep).order_by("at", "id")] == ["pending", "scheduled"]
    assert verify_chain().ok


def test_no_free_units_is_409_and_leaves_nothing(node, personas: dict, departments: dict) -> None:
    _create(personas, departments)
    with pytest.raises(Conflict, match="Nothing fits") as err:
        _create(personas, departments, name="d2")
    assert err.value.code == "no_capacity"
    assert not Deployment.objects.filter(name="d2").exists()
    assert UnitClaim.objects.count() == 2 and PortLease.objects.count() == 1


def test_other_department_cannot_use_the_pool(node, personas: dict, departments: dict) -> None:
    with pytest.raises(Conflict), transaction.atomic():
        services.create_deployment(
            personas["dave"], name="x", profile_id=profile_id("basic-7b"), department_id=departments["fin"].pk
        )


def test_missing_image_explains_how_to_import(personas: dict, departments: dict, seeded_profiles: None) -> None:
    node = simulated_node("n2")
    assign_all(personas["root"], node, departments["eng"])
    with pytest.raises(Conflict, match="docker load") as err:
        _create(personas, departments)
    assert err.value.code == "image_missing" and not Deployment.objects.exists()


def test_unknown_profile_is_400(node, personas: dict, departments: dict) -> None:
    with pytest.raises(InvalidInput, match="profile"):
        with transaction.atomic():
            services.create_deployment(
                personas["alice"], name="x", profile_id=999999, department_id=departments["eng"].pk
            )


def test_stop_of_stopped_is_409(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments, start=False)
    assert dep.state == State.PENDING
    with pytest.raises(Conflict) as err, transaction.atomic():
        services.stop_deployment(personas["alice"], dep.pk)
    assert err.value.code == "already_stopped"


def test_failure_releases_units_and_plans_backoff(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments)
    inst = Instance.objects.get(deployment=dep)
    assert lifecycle.claim_for_launch(inst.pk) is not None
    assert lifecycle.claim_for_launch(inst.pk) is None  # a re-delivered launch claims nothing
    lifecycle.mark_started(inst.pk, "c0ffee")
    lifecycle.mark_failed(inst.pk, "container died", exit_code=137, logs="out of memory\n")
    dep.refresh_from_db()
    assert dep.state == State.FAILED and "exit code 137" in dep.state_reason
    assert dep.restart_count == 1 and dep.next_restart_at is not None
    lifecycle.mark_stopped(inst.pk, 137)
    assert UnitClaim.objects.count() == 0 and PortLease.objects.count() == 0


@pytest.mark.parametrize(("n", "delay"), [(1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (12, 300)])
def test_backoff(n: int, delay: int) -> None:
    assert lifecycle.backoff_seconds(n) == delay


def test_api_permissions(node, personas: dict, departments: dict, api_as: Callable[[str], APIClient]) -> None:
    body = {"name": "web-7b", "profile": profile_id("basic-7b"), "department": departments["eng"].pk}
    assert api_as("bob").post("/api/v1/deployments/", body, format="json").status_code == 403
    assert api_as("dave").post("/api/v1/deployments/", body, format="json").status_code == 400
    resp = api_as("alice").post("/api/v1/deployments/", body, format="json")
    assert resp.status_code == 201, resp.content
    dep_id = resp.json()["id"]
    assert api_as("bob").get(f"/api/v1/deployments/{dep_id}/").status_code == 200
    assert api_as("charlie").get(f"/api/v1/deployments/{dep_id}/").status_code == 404
    assert api_as("bob").post(f"/api/v1/deployments/{dep_id}/stop/").status_code == 404
    assert api_as("dave").post(f"/api/v1/deployments/{dep_id}/stop/").status_code == 404
    bad = api_as("alice").post("/api/v1/deployments/", {**body, "name": "Bad Name!"}, format="json")
    assert bad.status_code == 400 and "name" in bad.json()["error"]["details"]
    dup = api_as("alice").post("/api/v1/deployments/", body, format="json")
    assert dup.status_code == 409


@pytest.mark.parametrize(("strategy", "expected"), [("spread", "big"), ("binpack", "small")])
def test_placement_strategy(
    personas: dict, departments: dict, seeded_profiles: None, settings: Any, strategy: str, expected: str
) -> None:
    for name, spec in (("big", "4x RTX 4090 24GB"), ("small", "2x RTX 4090 24GB")):
        node = simulated_node(name, spec)
        assign_all(personas["root"], node, departments["eng"])
        with_images(node)
    settings.APPLIANCE_PLACEMENT = strategy
    dep = _create(personas, departments)  # basic-7b: 2 GPUs
    assert Instance.objects.get(deployment=dep).node.name == expected


def test_restart_after_backoff_places_again(node, personas: dict, departments: dict) -> None:
    from datetime import timedelta

    from django.utils import timezone

    dep = _create(personas, departments)
    inst = Instance.objects.get(deployment=dep)
    lifecycle.claim_for_launch(inst.pk)
    lifecycle.mark_started(inst.pk, "c0ffee")
    lifecycle.mark_failed(inst.pk, "container died", exit_code=1)
    lifecycle.mark_stopped(inst.pk, 1)
    assert not lifecycle.restart_due(dep.pk)  # the back-off has not passed
    Deployment.objects.filter(pk=dep.pk).update(next_restart_at=timezone.now() - timedelta(seconds=1))
    assert lifecycle.restart_due(dep.pk)
    dep.refresh_from_db()
    assert dep.state == State.SCHEDULED and dep.restart_count == 1
    assert UnitClaim.objects.filter(deployment_id=dep.pk).count() == 2
    assert Instance.objects.get(deployment=dep).state == State.SCHEDULED


def test_no_restart_past_the_limit(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments, max_restarts=0)
    inst = Instance.objects.get(deployment=dep)
    lifecycle.claim_for_launch(inst.pk)
    lifecycle.mark_failed(inst.pk, "container died", exit_code=1)
    dep.refresh_from_db()
    assert dep.state == State.FAILED and dep.next_restart_at is None


def test_the_template_cost_measured_at_health_is_what_routing_reserves(node, personas: dict, departments: dict) -> None:
    dep = _create(personas, departments)
    inst = Instance.objects.get(deployment=dep)
    lifecycle.claim_for_launch(inst.pk)
    lifecycle.mark_started(inst.pk, "c0ffee")
    unmeasured = routing.template_cost(Instance.objects.get(pk=inst.pk))
    assert unmeasured == routing.default_template_cost()
    lifecycle.mark_healthy(inst.pk, "ok", template=TemplateCost(27, 6))
    (endpoint,) = routing.endpoints(personas["bob"], dep.served_model_name)
    assert endpoint.template == TemplateCost(27, 6) == routing.worst_template([endpoint])

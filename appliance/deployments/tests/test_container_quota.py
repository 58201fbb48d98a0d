"""Issue 12 finding: CPU-only profiles skipped GPU pools and quotas, so a department admin could fill
every node with ``replicas: 16`` repeated. Containers now count against a per-department limit."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from appliance.core.exceptions import QuotaExceeded
from appliance.deployments import services
from appliance.deployments.models import Deployment, Instance
from appliance.deployments.tests.factories import profile_id, simulated_node, with_images
from appliance.gpus import services as gpu_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def cpu_node(personas: dict, departments: dict, seeded_profiles: None) -> None:
    with_images(simulated_node("n1"))


def _create(personas: dict, dept: Any, name: str, replicas: int, who: str = "alice", **kw: Any) -> Deployment:
    with transaction.atomic():
        profile = profile_id("smollm2-cpu")
        return services.create_deployment(
            personas[who], name=name, profile_id=profile, department_id=dept.pk, replicas=replicas, **kw
        )


def _set_limit(personas: dict, dept: Any, limit: int | None) -> None:
    with transaction.atomic():
        gpu_services.set_quota(personas["root"], dept.pk, max_units=None, max_memory_gib=None, max_containers=limit)


@override_settings(APPLIANCE_DEFAULT_MAX_CONTAINERS=16)
def test_cpu_replicas_repeated_stop_at_the_default_limit(cpu_node, personas: dict, departments: dict) -> None:
    _create(personas, departments["eng"], "a", 16)
    with pytest.raises(QuotaExceeded) as err:
        _create(personas, departments["eng"], "b", 16)
    assert "16" in err.value.message and err.value.details["max_containers"] == 16
    assert err.value.details["in_use"] == 16 and err.value.details["adding"] == 16
    assert not Deployment.objects.filter(name="b").exists()
    assert Instance.objects.count() == 16


def test_department_limit_counts_its_subtree(cpu_node, personas: dict, departments: dict) -> None:
    _set_limit(personas, departments["eng"], 3)
    _create(personas, departments["eng_ml"], "ml", 2)  # a child department's containers count for eng too
    with pytest.raises(QuotaExceeded, match="3"):
        _create(personas, departments["eng"], "eng", 2)
    _create(personas, departments["eng"], "eng", 1)
    # Another department is not affected.
    _create(personas, departments["fin"], "fin", 2, who="dave")


def test_start_of_a_stopped_deployment_is_checked(cpu_node, personas: dict, departments: dict) -> None:
    _set_limit(personas, departments["eng"], 2)
    stopped = _create(personas, departments["eng"], "later", 2, start=False)
    _create(personas, departments["eng"], "now", 2)
    with pytest.raises(QuotaExceeded), transaction.atomic():
        services.start_deployment(personas["alice"], stopped.pk)


def test_explicit_limit_overrides_the_default_and_none_restores_it(cpu_node, personas: dict, departments: dict) -> None:
    with override_settings(APPLIANCE_DEFAULT_MAX_CONTAINERS=1):
        _set_limit(personas, departments["eng"], 4)
        _create(personas, departments["eng"], "a", 4)
        _set_limit(personas, departments["eng"], None)
        with pytest.raises(QuotaExceeded):
            _create(personas, departments["fin"], "f", 2, who="dave")


def test_quota_api_reads_and_writes_max_containers(api_as, personas: dict, departments: dict) -> None:
    root = api_as("root")
    resp = root.post("/api/v1/gpu-quotas/", {"department": departments["eng"].pk, "max_containers": 5}, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["max_containers"] == 5 and resp.json()["used_containers"] == 0
    quota_id = resp.json()["id"]
    resp = root.patch(f"/api/v1/gpu-quotas/{quota_id}/", {"max_containers": None}, format="json")
    assert resp.status_code == 200 and resp.json()["max_containers"] is None
    refused = api_as("alice").patch(f"/api/v1/gpu-quotas/{quota_id}/", {"max_containers": 99}, format="json")
    assert refused.status_code in (403, 404)

"""Every state change is audited (issue 12, item 9), a stop or restart of a deployment already stopping included."""

from __future__ import annotations

import pytest
from django.db import transaction

from appliance.audit.models import AuditRecord
from appliance.deployments import services
from appliance.deployments.choices import Desired, State
from appliance.deployments.models import Deployment
from appliance.deployments.tests.factories import assign_all, profile_id, simulated_node, with_images

pytestmark = pytest.mark.django_db


@pytest.fixture
def stopping(personas: dict, departments: dict, seeded_profiles: None) -> Deployment:
    node = simulated_node("n1")
    assign_all(personas["root"], node, departments["eng"])
    with_images(node)
    with transaction.atomic():
        dep = services.create_deployment(
            personas["alice"], name="d1", profile_id=profile_id("basic-7b"), department_id=departments["eng"].pk
        )
    with transaction.atomic():
        services.stop_deployment(personas["alice"], dep.pk)
    dep.refresh_from_db()
    assert dep.state == State.STOPPING
    return dep


def _records(dep: Deployment) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(target_type="deployments.deployment", target_id=str(dep.pk)).order_by("seq"))


def test_restart_of_a_stopping_deployment_is_kept_and_audited(stopping: Deployment, personas: dict) -> None:
    before = len(_records(stopping))
    with transaction.atomic():
        services.restart_deployment(personas["alice"], stopping.pk)
    stopping.refresh_from_db()
    assert stopping.desired == Desired.RUNNING  # the request is not lost
    records = _records(stopping)
    assert len(records) == before + 1
    last = records[-1]
    assert last.actor_name == "alice" and last.before is not None and last.after is not None
    assert last.before["desired"] == Desired.STOPPED and last.after["desired"] == Desired.RUNNING


def test_stop_of_a_stopping_deployment_is_audited(stopping: Deployment, personas: dict) -> None:
    before = len(_records(stopping))
    with transaction.atomic():
        services.stop_deployment(personas["root"], stopping.pk)
    records = _records(stopping)
    assert len(records) == before + 1 and records[-1].actor_name == "root"

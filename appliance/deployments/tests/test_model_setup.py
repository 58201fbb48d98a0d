"""Creating an Ollama deployment's model: the claims (one worker at a time, a dead one taken over) and the
whole step against the Ollama protocol double running as a process; real MariaDB, no Docker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from appliance.deployments import lifecycle, model_setup, services
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment, Event, Instance
from appliance.deployments.tests.factories import assign_all, simulated_node, smollm2_profile, with_images
from appliance.engines.tests.test_doubles import gguf
from appliance.engines.tests.test_doubles import ollama as ollama
from appliance.images.models import EngineImage

pytestmark = pytest.mark.django_db
IMAGE = "appliance-doubles/ollama:0.32.15"
MODEL = "smollm2-135m-instruct-q4_1"


@pytest.fixture
def starting(
    ollama: tuple[str, Path], tmp_path: Path, settings: Any, personas: dict, departments: dict, seeded_profiles: None
) -> Iterator[Instance]:
    """An Ollama deployment whose container 'started' and whose API is the double's."""
    url, _ = ollama
    settings.APPLIANCE_MODELS_DIR = str(tmp_path / "models")
    settings.APPLIANCE_LAUNCH_GRACE_SECONDS = 60
    (tmp_path / "models").mkdir()
    gguf(tmp_path / "models" / f"{MODEL}.gguf")
    node = simulated_node("n1")
    assign_all(personas["root"], node, departments["eng"])
    with_images(node, IMAGE)
    EngineImage.objects.create(engine="ollama", image=IMAGE)
    with transaction.atomic():
        dep = services.create_deployment(
            personas["alice"], name="olla", profile_id=smollm2_profile("ollama"), department_id=departments["eng"].pk
        )
    inst = Instance.objects.get(deployment=dep)
    assert lifecycle.claim_for_launch(inst.pk) is not None and lifecycle.mark_started(inst.pk, "c0ffee") is not None
    Instance.objects.filter(pk=inst.pk).update(host_port=int(url.rsplit(":", 1)[1]))
    yield Instance.objects.get(pk=inst.pk)


def _events(inst: Instance) -> list[str]:
    return list(
        Event.objects.filter(deployment_id=inst.deployment_id).order_by("at", "id").values_list("reason", flat=True)
    )


def test_one_claim_at_a_time_and_a_silent_one_is_taken_over(starting: Instance) -> None:
    token = lifecycle.claim_model_creation(starting.pk)
    assert token and lifecycle.claim_model_creation(starting.pk) is None  # the health check's next poll
    mine = lifecycle.start_model_creation(starting.pk, token)
    assert mine and lifecycle.start_model_creation(starting.pk, token) is None  # the same message, twice
    Instance.objects.filter(pk=starting.pk).update(model_claimed_at=timezone.now() - timedelta(seconds=61))
    taken = lifecycle.claim_model_creation(starting.pk)
    assert taken and taken != mine
    assert not lifecycle.model_work_alive(starting.pk, mine)  # the old worker learns it lost the work


def test_the_model_is_created_once_even_when_the_task_is_delivered_twice(starting: Instance) -> None:
    token = lifecycle.claim_model_creation(starting.pk)
    assert token is not None
    assert model_setup.create_engine_model(starting.pk, token) == "created"
    assert (
        model_setup.create_engine_model(starting.pk, token)
        == "not claimed (another delivery has it, or the instance moved on)"
    )
    events = _events(starting)
    assert events[-1] == f"{MODEL} created in ollama" and "Ollama: success" in events
    assert sum(e.startswith("pushing ") for e in events) == 1
    # A take-over after a worker died half-way finds the model there and only says so.
    Instance.objects.filter(pk=starting.pk).update(model_claimed_at=timezone.now() - timedelta(seconds=61))
    again = lifecycle.claim_model_creation(starting.pk)
    assert again is not None and model_setup.create_engine_model(starting.pk, again) == "created"
    assert _events(starting)[-2:] == [f"{MODEL} already exists in Ollama", f"{MODEL} created in ollama"]


def test_ollamas_refusal_fails_the_deployment_with_its_message(starting: Instance, settings: Any) -> None:
    Path(settings.APPLIANCE_MODELS_DIR, f"{MODEL}.gguf").write_bytes(b"PK\x03\x04 a zip, not a GGUF")
    token = lifecycle.claim_model_creation(starting.pk)
    assert token is not None and model_setup.create_engine_model(starting.pk, token) == "failed"
    dep = Deployment.objects.get(pk=starting.deployment_id)
    assert dep.state == State.FAILED
    assert dep.state_reason == f"ollama could not create {MODEL}: supplied file was not in GGUF format"


def test_without_a_models_directory_the_failure_says_what_to_set(starting: Instance, settings: Any) -> None:
    settings.APPLIANCE_MODELS_DIR = ""
    token = lifecycle.claim_model_creation(starting.pk)
    assert token is not None and model_setup.create_engine_model(starting.pk, token) == "failed"
    assert (
        "APPLIANCE_MODELS_DIR is not set on node n1" in Deployment.objects.get(pk=starting.deployment_id).state_reason
    )


def test_a_stopped_instance_is_not_worked_on(starting: Instance) -> None:
    token = lifecycle.claim_model_creation(starting.pk)
    Instance.objects.filter(pk=starting.pk).update(state=State.STOPPING)
    assert token is not None and model_setup.create_engine_model(starting.pk, token).startswith("not claimed")


def test_a_lost_health_check_is_restarted_once(starting: Instance) -> None:
    assert not lifecycle.claim_lost_health_check(starting)  # just started: its own probe loop is on it
    old = timezone.now() - timedelta(seconds=61)
    Instance.objects.filter(pk=starting.pk).update(started_at=old)
    silent = Instance.objects.get(pk=starting.pk)
    assert lifecycle.claim_lost_health_check(silent)
    assert not lifecycle.claim_lost_health_check(silent)  # a second reconciler with the same view
    assert not lifecycle.claim_lost_health_check(Instance.objects.get(pk=starting.pk))  # probed just now

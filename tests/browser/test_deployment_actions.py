"""Deployment detail in Chromium: buttons follow the state machine, stop/delete ask first naming what is lost,
a stopped deployment shows no endpoint or stale health, and the endpoint shown is the console's /v1."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings

from appliance.deployments import services
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment
from appliance.deployments.tests.factories import assign_all, profile_id, simulated_node, with_images
from tests.browser.ux import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
NODE = "actions-node"


@pytest.fixture
def running(personas: dict, departments: dict, seeded_profiles: None) -> Any:
    node = simulated_node(NODE, "2x RTX 4090 24GB")
    assign_all(personas["root"], node, departments["eng"])
    with_images(node)
    dep = services.create_deployment(
        personas["alice"], profile_id=profile_id("basic-7b"), department_id=departments["eng"].pk, name="web-7b"
    )
    # What the worker would have done: the engine answers on its host port.
    dep.instances.update(state=State.RUNNING, host_port=20000, health_detail="healthy after 1 s: model listed")
    Deployment.objects.filter(pk=dep.pk).update(state=State.RUNNING)
    yield Deployment.objects.get(pk=dep.pk)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(f"node.{NODE}")


def _enabled(page: Any) -> set[str]:
    verbs = ("start", "stop", "restart", "delete")
    return {v for v in verbs if page.is_enabled(f"[data-testid=actions] [data-testid={v}]")}


def test_buttons_follow_state_and_stop_delete_confirm(console_url: str, page: Any, running: Deployment) -> None:
    base = console_url
    login(page, base, "alice")
    page.goto(f"{base}/deployments/{running.pk}/")
    endpoint = page.inner_text("[data-testid=endpoint]")
    assert f"{base}/v1" in endpoint and running.served_model_name in endpoint
    assert ":20000" not in page.content()  # the raw engine address bypasses keys and quotas
    assert _enabled(page) == {"stop", "restart"}

    page.click("[data-testid=actions] [data-testid=stop]")
    dialog = page.locator("[data-testid=dialog]")
    assert dialog.is_visible()
    assert "web-7b" in page.inner_text("[data-testid=dialog-message]")
    assert "GPU" in page.inner_text("[data-testid=dialog-message]")
    page.click("[data-testid=dialog-cancel]")
    assert not dialog.is_visible()
    assert Deployment.objects.get(pk=running.pk).state == State.RUNNING

    page.click("[data-testid=actions] [data-testid=stop]")
    page.click("[data-testid=dialog-ok]")
    page.wait_for_selector("[data-testid=dep-state] >> text=停止中")
    assert Deployment.objects.get(pk=running.pk).state == State.STOPPING
    assert _enabled(page) == {"restart"}  # a restart may still be asked for once it has stopped

    # The worker stopped the containers.
    Deployment.objects.filter(pk=running.pk).update(state=State.STOPPED)
    running.instances.update(state=State.STOPPED)
    page.goto(f"{base}/deployments/{running.pk}/")
    assert "/v1" not in page.inner_text("[data-testid=endpoint]")
    assert "healthy" not in page.content() and "1 s" not in page.inner_text("[data-testid=instance]")
    assert _enabled(page) == {"start", "delete"}

    page.click("[data-testid=actions] [data-testid=delete]")
    message = page.inner_text("[data-testid=dialog-message]")
    assert "web-7b" in message and "无法撤销" in message
    page.click("[data-testid=dialog-ok]")
    page.wait_for_url(f"{base}/deployments/")
    assert not Deployment.objects.filter(pk=running.pk).exists()


def test_events_are_translated(console_url: str, page: Any, running: Deployment) -> None:
    login(page, console_url, "alice")
    page.goto(f"{console_url}/deployments/{running.pk}/")
    events = page.inner_text("[data-testid=events]")
    assert "已创建" in events and "created" not in events
    assert f"已调度到 {NODE}" in events or NODE in events
    assert "scheduled" not in events and "pending" not in events

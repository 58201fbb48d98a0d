"""The deployment wizard in Chromium: the fit check follows the chosen pool, then create → detail page."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings

from appliance.deployments.models import Deployment
from appliance.deployments.tests.factories import assign_all, simulated_node, with_images
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
NODE = "browser-node"


@pytest.fixture
def pool(personas: dict, departments: dict, seeded_profiles: None) -> Any:
    node = simulated_node(NODE, "2x RTX 4090 24GB")
    assign_all(personas["root"], node, departments["eng"])
    with_images(node)
    yield node
    # The launch queued for this node has no worker here: drop it from the broker.
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(f"node.{NODE}")


def test_wizard_fit_check_and_create(live_server: Any, page: Any, pool: Any) -> None:
    base = live_server.url
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")

    page.goto(f"{base}/deployments/new/")
    form = "[data-testid=deployment-form]"
    page.select_option(f"{form} select[name=department_id]", label="研发部")
    page.select_option(f"{form} select[name=profile_id]", label="标准版 Standard 32B")
    page.wait_for_selector("[data-testid=fit][data-status=no_fit]")  # 4 × 4090 asked, 2 in the pool
    page.select_option(f"{form} select[name=profile_id]", label="基础版 Basic 7B")
    page.wait_for_selector("[data-testid=fit][data-status=fits]")

    page.fill(f"{form} input[name=name]", "web-7b")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("[data-testid=dep-state]")
    assert "web-7b" in page.inner_text("h1")
    dep = Deployment.objects.get(name="web-7b")
    assert dep.instances.get().node.name == NODE
    assert page.inner_text("[data-testid=dep-state]").strip() == dep.get_state_display()

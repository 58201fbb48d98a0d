"""The deployment wizard in Chromium: it starts from what the pool's hardware can run, one step at a time."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings

from appliance.deployments.models import Deployment
from appliance.deployments.tests.factories import assign_all, simulated_node, with_images
from appliance.gpus.models import Node
from tests.browser.ux import login

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


def _option(page: Any, slug: str) -> str:
    return f"[data-testid=profile-option-{slug}]"


def test_wizard_defaults_to_what_fits_and_creates(console_url: str, page: Any, pool: Any) -> None:
    base = console_url
    login(page, base, "alice")
    page.goto(f"{base}/deployments/new/")
    assert page.is_visible("[data-step='1']") and not page.is_visible("[data-step='2']")
    page.click("[data-testid=wizard-next]")

    # 2 × 4090 in the pool: the 7B profile fits and is chosen; the 32B one (4 GPUs) cannot be picked.
    assert page.get_attribute(_option(page, "basic-7b"), "data-status") == "fits"
    assert page.is_checked(f"{_option(page, 'basic-7b')} input")
    assert page.get_attribute(_option(page, "standard-32b"), "data-status") == "no_fit"
    assert page.is_disabled(f"{_option(page, 'standard-32b')} input")
    page.click("[data-testid=wizard-next]")

    assert page.input_value("input[name=name]") == "basic-7b"
    assert page.get_attribute("[data-testid=fit]", "data-status") == "fits"
    page.fill("input[name=name]", "web-7b")
    page.click("[data-testid=create]")
    page.wait_for_selector("[data-testid=dep-state]")
    assert "web-7b" in page.inner_text("h1")
    dep = Deployment.objects.get(name="web-7b")
    assert dep.instances.get().node.name == NODE and dep.profile_version.profile.slug == "basic-7b"


def test_cpu_only_appliance_starts_on_the_cpu_profile(
    console_url: str, page: Any, personas: dict, departments: dict, seeded_profiles: None
) -> None:
    # A node with no GPU at all (what NVML reports on a CPU-only server), RAM enough for SmolLM2.
    Node.objects.create(name="cpu-node", hostname="cpu-node", ram_bytes=16 * 2**30, cpu_count=8)
    login(page, console_url, "alice")
    page.goto(f"{console_url}/deployments/new/")
    page.click("[data-testid=wizard-next]")
    assert page.is_checked(f"{_option(page, 'smollm2-cpu')} input")
    for slug in ("basic-7b", "standard-32b", "flagship-671b"):
        assert page.is_disabled(f"{_option(page, slug)} input"), slug
    page.click("[data-testid=wizard-next]")
    assert page.input_value("input[name=name]") == "smollm2-cpu"

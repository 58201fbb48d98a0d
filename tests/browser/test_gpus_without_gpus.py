"""Without any GPU the GPU page says why (in Chinese) and offers nothing to assign."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.gpus.models import Node
from appliance.gpus.nvml import ERROR_PREFIX
from tests.browser.ux import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_cpu_only_appliance(console_url: str, page: Any, personas: dict) -> None:
    Node.objects.create(
        name="cpu-01", hostname="cpu-01", inventory_error=f"{ERROR_PREFIX}NVML Shared Library Not Found"
    )
    login(page, console_url, "root")
    page.goto(f"{console_url}/gpus/")
    why = page.inner_text("[data-testid=no-gpus]")
    assert "没有控制台可用的 NVIDIA GPU" in why and "cpu-01" in why and "CPU" in why
    assert "NVML Shared Library Not Found" in why  # the driver's own words, for the engineer
    assert page.locator("[data-testid=open-assign]").count() == 0
    page.goto(f"{console_url}/nodes/")
    assert "此节点上没有 NVIDIA GPU 或驱动" in page.inner_text("[data-testid=inventory-error]")


def test_member_of_a_department_without_units(console_url: str, page: Any, personas: dict) -> None:
    from appliance.deployments.tests.factories import simulated_node

    simulated_node("gpu-01", "2x RTX 4090 24GB")  # GPUs exist, none assigned to 研发部
    login(page, console_url, "bob")
    page.goto(f"{console_url}/gpus/")
    assert "尚未分配给您的部门" in page.inner_text("[data-testid=no-gpus]")

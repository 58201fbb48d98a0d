"""A platform admin assigns a simulated GPU to a department on the grid and sees the tile change."""

from __future__ import annotations

import os
from typing import Any

import pytest

from appliance.gpus import services
from appliance.gpus.models import GpuUnit
from appliance.gpus.nodes import register_node
from appliance.gpus.simulated import collect_simulated
from appliance.gpus.sync import apply_inventory
from appliance.gpus.tests.conftest import FACTS
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _login(page: Any, base: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_assign_a_simulated_gpu_and_watch_the_tile(
    console_url: str, page: Any, personas: dict, departments: dict
) -> None:
    node = register_node("gpu-01", FACTS)
    apply_inventory(node.pk, collect_simulated("2x RTX 4090 24GB", "gpu-01"))
    unit = GpuUnit.objects.order_by("pk").first()
    assert unit is not None
    tile = f"[data-testid=tile-{unit.pk}]"
    base = console_url
    _login(page, base)

    page.goto(f"{base}/gpus/")
    assert page.inner_text(f"{tile} [data-field=department]") == "空闲"
    assert "模拟" in page.inner_text(tile)
    page.check(f"{tile} input[name=units]")
    page.click("[data-testid=open-assign]")
    page.select_option("[data-testid=assign-dialog] select[name=action]", "assign")
    page.select_option("[data-testid=assign-dialog] select[name=department_id]", label="研发部")
    page.click("[data-testid=assign-submit]")

    page.wait_for_selector(f"{tile} [data-field=department] >> text=研发部")
    assert "已更新 1 个 GPU 单元" in page.inner_text(".messages")
    assert GpuUnit.objects.get(pk=unit.pk).department_id == departments["eng"].pk
    if os.environ.get("GPU_GRID_SCREENSHOT"):
        page.screenshot(path=os.environ["GPU_GRID_SCREENSHOT"], full_page=True)

    # Someone else moves it: the grid's 3-second poll repaints the tile without a reload.
    services.move_units(personas["root"], [unit.pk], departments["fin"].pk)
    page.wait_for_selector(f"{tile} [data-field=department] >> text=财务部", timeout=10_000)
    assert page.inner_text("[data-summary=free]") == "1"

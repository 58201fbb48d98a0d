"""The admin dashboard draws live ECharts charts with named axes (zh-Hans and English); a department's usage too."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from appliance.accounts.services import create_api_key
from appliance.deployments.tests.factories import simulated_node
from appliance.gpus.choices import Resolution
from appliance.gpus.metrics import record_samples, rollup
from appliance.gpus.models import Gpu
from appliance.quotas.drain import store_records
from appliance.quotas.usage import RequestMeta, usage_record
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _seed(personas: dict[str, Any]) -> None:
    node = simulated_node("gpu-d1", "2x H100 80GB")
    now = timezone.now()
    for minutes in range(290, -1, -10):  # oldest first, rolled up as it arrives (beat's gpus.rollup-metrics)
        at = now - timedelta(minutes=minutes)
        Gpu.objects.filter(node=node).update(util_gpu=20 + minutes % 70, memory_used=(10 + minutes % 50) * 1024**3)
        record_samples(Gpu.objects.filter(node=node), at)
        rollup(Resolution.MINUTE, at + timedelta(minutes=2))
    rows = []
    for n in range(60):
        user = personas[("bob", "carol", "charlie")[n % 3]]
        meta = RequestMeta(
            user_id=user.pk, department_id=user.department_id, model=("qwen2.5-7b", "deepseek-r1")[n % 2]
        )
        moment = (now - timedelta(days=n % 10, hours=n % 5)).timestamp()
        rows.append(
            usage_record(meta, f"d{n}", status="ok", prompt_tokens=300 + 40 * n, completion_tokens=500, now=moment)
        )
    store_records(rows)
    with transaction.atomic():
        create_api_key(personas["alice"], name="dashboard-key")


def _login(page: Any, base: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


AXES = """el => { const o = echarts.getInstanceByDom(el).getOption();
  return {x: o.xAxis[0].name, y: o.yAxis[0].name, title: o.title[0].text, series: o.series.length}; }"""
POINTS = "el => echarts.getInstanceByDom(el).getOption().series.map(s => s.data.filter(p => p[1] !== null).length)"


def test_dashboard_charts_have_data_and_labelled_axes(
    console_url: str, page: Any, personas: dict[str, Any], seeded_profiles: None
) -> None:
    _seed(personas)
    base = console_url
    _login(page, base)
    page.wait_for_selector(".dashboard-charts[data-loaded=true]")
    util = page.eval_on_selector("[data-testid=chart-gpu-util]", AXES)
    assert util == {"x": "时间", "y": "利用率（%）", "title": "GPU 利用率", "series": 2}
    assert all(n >= 20 for n in page.eval_on_selector("[data-testid=chart-gpu-util]", POINTS))
    tokens = page.eval_on_selector("[data-testid=chart-tokens-model]", AXES)
    assert tokens == {"x": "日期", "y": "token 数", "title": "各模型每日 token 数", "series": 2}
    departments = page.eval_on_selector("[data-testid=chart-tokens-department]", AXES)
    assert departments["series"] == 3  # 研发部 (bob), 算法组 (carol), 财务部 (charlie)
    assert page.locator("[data-testid=chart-gpu-memory] canvas").count() == 1
    assert "dashboard-key" in page.inner_text("[data-testid=dashboard-audit]")
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        page.set_viewport_size({"width": 1400, "height": 1100})
        page.wait_for_timeout(500)
        page.screenshot(path=os.environ["DASHBOARD_SCREENSHOT"], full_page=True)

    page.context.add_cookies([{"name": "django_language", "value": "en", "url": base}])
    page.goto(f"{base}/")
    page.wait_for_selector(".dashboard-charts[data-loaded=true]")
    util = page.eval_on_selector("[data-testid=chart-gpu-util]", AXES)
    assert util == {"x": "Time", "y": "Utilisation (%)", "title": "GPU utilisation", "series": 2}


def test_usage_page_charts_by_model_and_user(console_url: str, page: Any, personas: dict[str, Any]) -> None:
    _seed(personas)
    base = console_url
    _login(page, base)
    page.goto(f"{base}/usage/departments/")  # a platform admin lands on the first department: 研发部
    page.wait_for_selector(".usage-charts[data-loaded=true]")
    by_model = page.eval_on_selector("[data-testid=chart-by-model]", AXES)
    assert by_model == {"x": "日期", "y": "token 数", "title": "各模型每日 token 数", "series": 2}
    by_user = page.eval_on_selector("[data-testid=chart-by-user]", AXES)
    assert by_user == {"x": "用户", "y": "token 数", "title": "各用户 token 数", "series": 2}
    if os.environ.get("USAGE_SCREENSHOT"):
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.wait_for_timeout(500)
        page.screenshot(path=os.environ["USAGE_SCREENSHOT"], full_page=True)

"""The usage pages in Chromium, in both languages: a department admin reads the charts (named axes),
exports the table as CSV and sets a member's quota with the form; the member sees it on their own page."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from appliance.quotas.drain import store_records
from appliance.quotas.usage import RequestMeta, usage_record
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXES = """el => { const o = echarts.getInstanceByDom(el).getOption();
  return {x: o.xAxis[0].name, y: o.yAxis[0].name, title: o.title[0].text, series: o.series.length}; }"""


def _seed(personas: dict[str, Any]) -> None:
    now, rows = timezone.now(), []
    for n in range(30):
        user = personas[("bob", "carol")[n % 2]]
        meta = RequestMeta(
            user_id=user.pk, department_id=user.department_id, model=("通义千问", "deepseek-r1")[n % 3 % 2]
        )
        moment = (now - timedelta(days=n % 7, hours=n % 5)).timestamp()
        rows.append(usage_record(meta, f"u{n}", status="ok", prompt_tokens=200 + n, completion_tokens=300, now=moment))
    rejected = RequestMeta(
        user_id=personas["carol"].pk, department_id=personas["carol"].department_id, model="通义千问"
    )
    rows.append(usage_record(rejected, "refused", status="rejected", prompt_tokens=50, reason="tokens_per_day"))
    store_records(rows)


def _login(page: Any, base: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def _screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("USAGE_SCREENSHOTS")
    if folder:
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.wait_for_timeout(500)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def _english(page: Any, base: str) -> None:
    page.context.add_cookies([{"name": "django_language", "value": "en", "url": base}])


def test_department_page_charts_export_and_quota_form(
    console_url: str, page: Any, personas: dict[str, Any], tmp_path: Path
) -> None:
    _seed(personas)
    base, carol = console_url, personas["carol"]
    _login(page, base, "alice")
    page.click("#sidenav >> text=部门用量")
    page.wait_for_selector(".usage-charts[data-loaded=true]")
    assert page.url.startswith(f"{base}/usage/departments/{personas['alice'].department_id}/")
    by_model = page.eval_on_selector("[data-testid=chart-by-model]", AXES)
    assert by_model == {"x": "日期", "y": "token 数", "title": "各模型每日 token 数", "series": 2}
    by_user = page.eval_on_selector("[data-testid=chart-by-user]", AXES)
    assert by_user == {"x": "用户", "y": "token 数", "title": "各用户 token 数", "series": 2}
    assert "超出配额：每日 token 数" in page.inner_text("[data-testid=refusals]")

    with page.expect_download() as download:
        page.click("[data-testid=export-model]")
    download.value.save_as(tmp_path / "by-model.csv")
    csv = (tmp_path / "by-model.csv").read_bytes()
    assert csv.startswith("\ufeff模型,请求数".encode())
    assert "通义千问," in csv.decode("utf-8")

    page.select_option("select[name=target]", f"u:{carol.pk}")
    page.fill("input[name=tokens_per_day]", "1000")
    page.fill("input[name=requests_per_minute]", "5")
    page.click("[data-testid=quota-form] button[type=submit]")
    page.wait_for_selector(f"[data-testid='quota-u:{carol.pk}']")
    assert "配额已保存：用户：carol。" in page.inner_text("main")
    assert "1000" in page.inner_text(f"[data-testid='quota-u:{carol.pk}']")
    assert page.input_value("input[name=tokens_per_day]") == "1000"  # the form shows the saved quota
    _screenshot(page, "usage-department-zh.png")

    _english(page, base)
    page.reload()
    page.wait_for_selector(".usage-charts[data-loaded=true]")
    by_model = page.eval_on_selector("[data-testid=chart-by-model]", AXES)
    assert by_model == {"x": "Day", "y": "Tokens", "title": "Tokens per day by model", "series": 2}
    assert "Tokens per day" in page.inner_text("[data-testid=quotas]")

    # The quota applies to carol at once: her page shows the limit and what is left of it today.
    _login(page, base, "carol")
    page.click(".portal-nav >> text=我的用量")  # a member's home is the portal: its menu
    page.wait_for_selector(".usage-charts[data-loaded=true]")
    quotas = page.inner_text("[data-testid=quotas]")
    assert "你（carol）" in quotas and "每日 token 数" in quotas and "1000" in quotas and "每分钟请求数" in quotas
    assert page.eval_on_selector("[data-testid=chart-by-model]", AXES) == {
        "x": "日期", "y": "token 数", "title": "各模型每日 token 数", "series": 2,
    }  # fmt: skip
    assert "超出配额：每日 token 数" in page.inner_text("[data-testid=refusals]")
    assert page.locator("text=部门用量").count() == 0
    _screenshot(page, "usage-own-zh.png")
    _english(page, base)
    page.reload()
    page.wait_for_selector(".usage-charts[data-loaded=true]")
    assert page.eval_on_selector("[data-testid=chart-by-model]", AXES)["y"] == "Tokens"
    assert "Quota exceeded: Tokens per day" in page.inner_text("[data-testid=refusals]")
    assert page.goto(f"{base}/usage/departments/").status == 403

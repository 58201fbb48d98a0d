"""The capacity calculator in headless Chromium: typing updates the plan from the API."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.catalog.models import Profile, ProfileVersion
from appliance.catalog.seeds import seed_profiles
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HEADLINE = "[data-testid=capacity-headline] [data-key-headline]"
STREAMS = "[data-testid=capacity-result] [data-key=max_concurrent_sequences]"


def _login(page: Any, base: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_calculator_updates_as_you_type(console_url: str, page: Any, personas: dict) -> None:
    seed_profiles(Profile, ProfileVersion)  # a transactional test before this one may have flushed them
    base = console_url
    _login(page, base)
    page.click("aside.sidenav a[href='/capacity/']")
    page.wait_for_url(f"{base}/capacity/")
    form = "[data-testid=capacity-form]"
    # The Standard tier of docs/capacity.md: 32B FP16 on 4 × 24 GiB at 4K.
    page.select_option(f"{form} select[name=model]", "deepseek-r1-distill-qwen-32b")
    page.select_option(f"{form} select[name=dtype]", "fp16")
    page.fill(f"{form} input[name=gpu_count]", "4")
    page.fill(f"{form} input[name=memory_per_gpu_gib]", "24")
    page.fill(f"{form} input[name=context_length]", "4096")
    page.wait_for_function(f"document.querySelector('{STREAMS}').textContent === '19'")
    assert page.inner_text(HEADLINE) == "19"
    assert page.inner_text("[data-key=max_tokens_in_cache]") == "79,349"

    page.fill(f"{form} input[name=context_length]", "8192")
    page.wait_for_function(f"document.querySelector('{STREAMS}').textContent === '9'")

    page.fill(f"{form} input[name=tensor_parallel]", "3")
    error = page.wait_for_selector("[data-testid=capacity-error]:not([hidden])")
    assert "tensor_parallel" in error.inner_text()
    assert page.get_attribute(f"{form} input[name=tensor_parallel]", "aria-invalid") == "true"
    assert page.inner_text(HEADLINE) == "—"

    page.fill(f"{form} input[name=tensor_parallel]", "")
    page.select_option(f"{form} select[name=preset]", "basic-7b")
    page.wait_for_function(f"document.querySelector('{STREAMS}').textContent === '59'")
    assert page.input_value(f"{form} input[name=gpu_count]") == "2"

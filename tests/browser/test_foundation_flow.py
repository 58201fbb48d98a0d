"""A platform admin's first session, driven in headless Chromium against the console as `make run` serves it."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.accounts.models import ApiKey, User
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _login(page: Any, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_admin_creates_department_user_and_key_and_sees_audit(console_url: str, page: Any, personas: dict) -> None:
    base = console_url
    _login(page, base, "root", PASSWORD)
    page.wait_for_url(f"{base}/")
    assert "root" in page.inner_text("[data-testid=whoami]")

    page.goto(f"{base}/departments/")
    page.click("summary")
    page.fill("[data-testid=department-form] input[name=code]", "legal")
    page.fill("[data-testid=department-form] input[name=name]", "法务部")
    page.click("[data-testid=department-form] button[type=submit]")
    page.wait_for_selector("[data-testid=departments] >> text=法务部")

    page.goto(f"{base}/users/")
    page.click("summary")
    form = "[data-testid=user-form]"
    page.fill(f"{form} input[name=username]", "grace")
    page.select_option(f"{form} select[name=department_id]", label="法务部")
    page.select_option(f"{form} select[name=role]", "member")
    page.fill(f"{form} input[name=password]", "grace-strong-pass-1")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("[data-testid=users] >> text=grace")
    assert User.objects.get(username="grace").department.code == "legal"

    page.goto(f"{base}/api-keys/")
    page.click("summary")
    page.fill("[data-testid=key-form] input[name=name]", "open-webui")
    page.click("[data-testid=key-form] button[type=submit]")
    secret = page.inner_text("[data-testid=new-key] code").strip()
    key = ApiKey.objects.get(name="open-webui")
    assert secret.startswith(f"ak_{key.prefix}_")

    page.goto(f"{base}/api-keys/")
    page.click("[data-testid=api-keys] tr:has-text('open-webui') button")
    assert "open-webui" in page.inner_text("[data-testid=dialog-message]")  # asks first, naming the key
    page.click("[data-testid=dialog-ok]")
    page.wait_for_selector("[data-testid=api-keys] tr:has-text('open-webui') >> text=已吊销")

    page.goto(f"{base}/audit-log/")
    # Human labels, the code on hover.
    codes = page.eval_on_selector_all("[data-testid=audit] [data-code]", "els => els.map(e => e.title)")
    for action in ("login.success", "department.create", "user.create", "api_key.create", "api_key.revoke"):
        assert action in codes, action
    audit_text = page.inner_text("[data-testid=audit]")
    assert "API 密钥 · 已吊销" in audit_text and "api_key.revoke" not in audit_text
    # Substring filters: a word of the code, part of the actor's name.
    page.fill("input[name=action]", "api_key")
    page.click("form.filters button[type=submit]")
    rows = page.locator("[data-testid=audit] tbody tr")
    assert rows.count() == 2
    page.fill("input[name=action]", "")
    page.fill("input[name=actor]", "roo")
    page.click("form.filters button[type=submit]")
    assert page.locator("[data-testid=audit] tbody tr").count() >= 5
    page.fill("input[name=actor]", "nobody-like-this")
    page.click("form.filters button[type=submit]")
    assert page.locator("[data-testid=audit] tbody tr [data-code]").count() == 0


def test_wrong_password_shows_error_and_switch_to_english(console_url: str, page: Any, personas: dict) -> None:
    base = console_url
    _login(page, base, "bob", "not-the-password")
    assert "用户名或密码错误" in page.inner_text("[data-testid=login-error]")
    page.select_option("[data-testid=language]", "en")
    page.wait_for_selector("text=Log in")
    _login(page, base, "bob", PASSWORD)
    page.wait_for_url(f"{base}/")
    assert "Welcome" in page.content()

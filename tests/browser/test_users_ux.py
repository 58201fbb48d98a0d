"""User pages in Chromium: the new-user form defaults to member, edit / role change / password reset pages
offer only what the role hierarchy allows, and the password-strength error is in Chinese."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.accounts.choices import Role
from appliance.accounts.models import User
from tests.browser.ux import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_new_user_defaults_to_member_and_weak_password_is_chinese(console_url: str, page: Any, personas: dict) -> None:
    base = console_url
    login(page, base, "root")
    page.goto(f"{base}/users/")
    page.click("summary")
    form = "[data-testid=user-form]"
    assert page.input_value(f"{form} select[name=role]") == Role.MEMBER
    page.fill(f"{form} input[name=username]", "henry")
    page.select_option(f"{form} select[name=department_id]", label="研发部")
    page.fill(f"{form} input[name=password]", "short")
    page.click(f"{form} button[type=submit]")
    error = page.inner_text(form)
    assert "密码" in error and "too short" not in error
    assert not User.objects.filter(username="henry").exists()


def test_admin_edits_role_and_resets_password(console_url: str, page: Any, personas: dict) -> None:
    base = console_url
    login(page, base, "root")
    page.goto(f"{base}/users/")
    page.click("[data-testid=edit-bob]")
    form = "[data-testid=user-edit-form]"
    page.fill(f"{form} input[name=display_name]", "Bob Builder")
    page.select_option(f"{form} select[name=role]", Role.DEPARTMENT_ADMIN)
    page.click(f"{form} button[type=submit]")
    page.wait_for_url(f"{base}/users/")
    bob = User.objects.get(username="bob")
    assert bob.role == Role.DEPARTMENT_ADMIN and bob.display_name == "Bob Builder"

    page.click("[data-testid=edit-bob]")
    page.fill("[data-testid=password-reset-form] input[name=new_password]", "a-brand-new-secret-42")
    page.click("[data-testid=password-reset-form] button[type=submit]")
    assert "bob" in page.inner_text("[data-testid=dialog-message]")
    page.click("[data-testid=dialog-ok]")
    page.wait_for_url(f"{base}/users/")
    assert User.objects.get(username="bob").check_password("a-brand-new-secret-42")


def test_department_admin_sees_only_what_the_gate_allows(console_url: str, page: Any, personas: dict) -> None:
    base = console_url
    login(page, base, "alice")
    page.goto(f"{base}/users/")
    page.click("summary")
    offered = set(
        page.eval_on_selector_all("[data-testid=user-form] select[name=role] option", "os => os.map(o => o.value)")
    )
    assert Role.PLATFORM_ADMIN not in offered and Role.AUDITOR not in offered and Role.MEMBER in offered
    assert page.locator("[data-testid=edit-charlie]").count() == 0  # another department's member

    page.click("[data-testid=edit-bob]")
    offered = set(
        page.eval_on_selector_all("[data-testid=user-edit-form] select[name=role] option", "os => os.map(o => o.value)")
    )
    assert Role.PLATFORM_ADMIN not in offered
    # The page is refused for a user outside the gate, not merely hidden.
    response = page.goto(f"{base}/users/{personas['charlie'].pk}/")
    assert response is not None and response.status == 404

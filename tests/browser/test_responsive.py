"""The console's main pages at a phone's 390×844 and a desktop's 1440×900: nothing wider than the viewport
(a wide table scrolls inside its own box), and on the phone the menu opens from its button."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.ux import DESKTOP, PHONE, assert_fits, login
from tests.scenes import seed_appliance

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def scene(personas: dict, departments: dict, seeded_profiles: None) -> dict[str, Any]:
    return seed_appliance(personas, departments)


def _admin_pages(scene: dict[str, Any], personas: dict) -> list[str]:
    return [
        "/", "/deployments/", "/deployments/new/", f"/deployments/{scene['deployment'].pk}/", "/users/",
        f"/users/{personas['bob'].pk}/", "/departments/", "/api-keys/", "/audit-log/", "/nodes/", "/gpus/",
        "/gpu-quotas/", "/profiles/", "/catalog/", "/capacity/", "/usage/", "/images/",
        f"/usage/departments/{personas['alice'].department_id}/",
    ]  # fmt: skip


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_admin_pages_fit_the_viewport(
    console_url: str, page: Any, scene: dict[str, Any], personas: dict, size: dict
) -> None:
    page.set_viewport_size(size)
    login(page, console_url, "root")
    for url in _admin_pages(scene, personas):
        page.goto(f"{console_url}{url}")
        assert_fits(page)


def test_phone_menu_opens_from_its_button(console_url: str, page: Any, scene: dict[str, Any]) -> None:
    page.set_viewport_size(PHONE)
    login(page, console_url, "root")
    page.goto(f"{console_url}/users/")
    sidenav = page.locator("[data-testid=sidenav]")
    assert not sidenav.is_visible()
    content = page.locator("main.content").bounding_box()
    assert content["width"] > PHONE["width"] * 0.9  # the content has the whole width, not 55 % of it
    page.click("[data-testid=nav-toggle]")
    assert sidenav.is_visible()
    page.click("[data-testid=sidenav] >> text=审计日志")
    page.wait_for_url(f"{console_url}/audit-log/")
    assert_fits(page)


def test_desktop_keeps_the_sidebar(console_url: str, page: Any, scene: dict[str, Any]) -> None:
    page.set_viewport_size(DESKTOP)
    login(page, console_url, "root")
    assert page.is_visible("[data-testid=sidenav]") and not page.is_visible("[data-testid=nav-toggle]")


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_member_pages_fit_the_viewport(console_url: str, page: Any, scene: dict[str, Any], size: dict) -> None:
    page.set_viewport_size(size)
    login(page, console_url, "bob")
    for url in ("/", "/api-keys/", "/usage/", "/gpus/", "/chat/"):
        page.goto(f"{console_url}{url}")
        assert_fits(page)

"""The images page shows each engine's full image tag, uncut, at desktop and phone widths."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from appliance.images.catalog import image_for
from tests.browser.ux import DESKTOP, PHONE, assert_fits, login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_full_tag_is_visible(console_url: str, page: Any, personas: dict, size: dict) -> None:
    page.set_viewport_size(size)
    login(page, console_url, "root")
    page.goto(f"{console_url}/images/")
    for engine in settings.APPLIANCE_ENGINE_IMAGES:
        image = image_for(engine)
        cell = page.locator(f"[data-testid=tag-{engine}]")
        assert cell.inner_text() == image
        assert cell.evaluate("e => e.scrollWidth <= e.clientWidth + 1")  # not clipped
    assert_fits(page)

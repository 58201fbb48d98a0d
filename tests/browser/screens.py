"""Screenshots of the main pages in both languages at phone and desktop sizes, into docs/screenshots/.

Not a test (no assertions beyond the pages loading): run it with `make screenshots`
(deploy/scripts/screenshots.sh), which also compresses the PNGs. It reuses the browser tests' fixtures:
the console served over HTTP and WebSocket, a fake engine for the chat, the seeded scene.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.chat.tests.factories import running_deployment
from appliance.chat.tests.fake_engine import FakeEngine, Script
from conftest import PASSWORD
from tests.browser import test_chat_flow
from tests.browser.ux import DESKTOP, PHONE
from tests.scenes import seed_appliance

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
console_env = test_chat_flow.console_env  # the chat's Redis for the console that console_url starts
engine = test_chat_flow.engine

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ANSWER = ["可以这样读取文件：\n\n", "```python\n", "with open('data.csv') as f:\n", "    print(f.read())\n", "```\n"]


def _pages(scene: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(file name, who looks, path)."""
    return [
        ("overview", "root", "/"),
        ("wizard", "alice", "/deployments/new/"),
        ("deployment", "alice", f"/deployments/{scene['deployment'].pk}/"),
        ("gpus", "root", "/gpus/"),
        ("users", "root", "/users/"),
        ("audit-log", "root", "/audit-log/"),
        ("chat", "bob", "/chat/"),
    ]


def _login(page: Any, url: str, username: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/login/" not in u)


def _chat(page: Any, engine: FakeEngine, language: str) -> None:
    page.wait_for_selector(f"[data-testid=model-picker] option[value='{engine.model}']", state="attached")
    page.select_option("[data-testid=model-picker]", engine.model)
    connected = "已连接" if language == "zh-hans" else "Connected"
    page.wait_for_selector(f"[data-testid=connection] >> text={connected}")
    question = "怎样用 Python 读取 CSV 文件？" if language == "zh-hans" else "How do I read a CSV in Python?"
    page.fill("[data-testid=composer]", question)
    page.click("[data-testid=send]")
    page.locator("[data-testid=assistant-message][data-status=complete]").wait_for(timeout=20_000)


def test_screenshots(
    console_url: str, browser: Any, personas: dict, departments: dict, seeded_profiles: None, engine: FakeEngine
) -> None:
    scene = seed_appliance(personas, departments)
    running_deployment(departments["eng"], personas["alice"], engine.model, engine.port)
    engine.default = Script(content=ANSWER)
    OUT.mkdir(parents=True, exist_ok=True)
    for language in ("zh-hans", "en"):
        for size_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            context = browser.new_context(locale="zh-CN", viewport=size)
            context.add_cookies([{"name": "django_language", "value": language, "url": console_url}])
            page = context.new_page()
            page.set_default_timeout(15_000)
            who = ""
            for name, username, path in _pages(scene):
                if username != who:
                    context.clear_cookies(name="sessionid")
                    _login(page, console_url, username)
                    who = username
                page.goto(f"{console_url}{path}")
                if name == "chat":
                    _chat(page, engine, language)
                if name == "wizard":
                    page.click("[data-testid=wizard-next]")
                page.screenshot(path=OUT / f"{name}-{language}-{size_name}.png")
            context.close()

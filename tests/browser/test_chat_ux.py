"""The chat in Chromium at desktop and phone sizes: code blocks with a language label and a copy button, a
toolbar that messages never scroll under, an honest note for a reply stopped before any text, the profile's
default answer length shown and changeable, in-page rename/delete, and the conversation list on a phone."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.accounts.models import User
from appliance.catalog.models import ProfileVersion
from appliance.chat.tests.factories import running_deployment
from appliance.chat.tests.fake_engine import FakeEngine, Script
from tests.browser import test_chat_flow
from tests.browser.ux import DESKTOP, PHONE, assert_fits, login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# The chat flow's fixtures (the console served over HTTP + WebSocket, a fake engine), however it serves them.
console_env = test_chat_flow.console_env  # the chat's Redis for the console that console_url starts
engine = test_chat_flow.engine
_log_in_and_open_chat = test_chat_flow._log_in_and_open_chat
CODE = ["Here:\n\n", "```python\n", "print('hi')\n", "```\n"]


@pytest.fixture
def chat_model(personas: dict[str, User], engine: FakeEngine) -> FakeEngine:
    dep = running_deployment(personas["alice"].department, personas["alice"], engine.model, engine.port)
    # Versions are immutable through save(); the factory's version stands for a profile set to 300.
    ProfileVersion.objects.filter(pk=dep.profile_version_id).update(default_max_tokens=300)
    return engine


def _open_chat(page: Any, url: str, username: str) -> None:
    login(page, url, username)
    page.goto(f"{url}/chat/")
    page.wait_for_selector("[data-testid=connection] >> text=已连接")


def _pick_model(page: Any, engine: FakeEngine) -> None:
    page.wait_for_selector(f"[data-testid=model-picker] option[value='{engine.model}']", state="attached")
    page.select_option("[data-testid=model-picker]", engine.model)


def _send(page: Any, text: str) -> None:
    page.fill("[data-testid=composer]", text)
    page.click("[data-testid=send]")


def test_code_copy_default_length_and_fixed_toolbar(
    console_url: str,
    page: Any,
    chat_model: FakeEngine,
) -> None:
    page.set_viewport_size(DESKTOP)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    _log_in_and_open_chat(page, console_url, "bob")
    _pick_model(page, chat_model)
    page.click(".chat-settings summary")
    assert "300" in page.inner_text("[data-testid=max-tokens-hint]")
    assert page.get_attribute("[data-testid=max-tokens]", "placeholder") == "默认 300"

    chat_model.default = Script(content=CODE * 12, delay=0.01)  # long enough to scroll
    _send(page, "写一段代码")
    done = page.locator("[data-testid=assistant-message][data-status=complete]")
    done.wait_for(timeout=20_000)
    assert chat_model.seen.bodies[-1]["max_tokens"] == 300  # the profile's default, as shown
    assert done.locator("[data-testid=code-language]").first.inner_text() == "python"
    done.locator("[data-testid=copy-code]").first.click()
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')\n"

    # Only the message list scrolls: the toolbar stays above it and the page itself never scrolls.
    page.eval_on_selector("[data-testid=messages]", "m => m.scrollTop = 0")
    page.eval_on_selector("[data-testid=messages]", "m => m.scrollTop = m.scrollHeight")
    toolbar = page.locator("[data-testid=chat-toolbar]").bounding_box()
    messages = page.locator("[data-testid=messages]").bounding_box()
    assert toolbar["y"] >= 0 and toolbar["y"] + toolbar["height"] <= messages["y"] + 1
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight + 1")
    assert_fits(page)

    page.fill("[data-testid=max-tokens]", "50")
    chat_model.default = Script(content=["好"])
    _send(page, "再来")
    page.locator("[data-testid=assistant-message][data-status=complete]").nth(1).wait_for(timeout=20_000)
    assert chat_model.seen.bodies[-1]["max_tokens"] == 50


def test_a_reply_stopped_before_any_text_says_so(
    console_url: str,
    page: Any,
    chat_model: FakeEngine,
) -> None:
    chat_model.default = Script(content=["太晚了"], first_delay=5)
    _log_in_and_open_chat(page, console_url, "bob")
    _pick_model(page, chat_model)
    _send(page, "你好")
    page.wait_for_selector("[data-testid=stop]:visible")
    page.click("[data-testid=stop]")
    problem = page.locator("[data-testid=assistant-message][data-status=stopped] [data-testid=problem]")
    problem.wait_for(timeout=20_000)
    assert problem.inner_text() == "您在模型输出任何内容之前停止了回答。"


def test_phone_conversation_list_new_rename_delete(
    console_url: str,
    page: Any,
    chat_model: FakeEngine,
) -> None:
    page.set_viewport_size(PHONE)
    _open_chat(page, console_url, "bob")  # on a phone the page links sit behind the menu button
    _pick_model(page, chat_model)
    assert not page.is_visible("[data-testid=chat-sidebar]")
    chat_model.default = Script(content=["一"])
    _send(page, "第一个问题")
    page.locator("[data-testid=assistant-message][data-status=complete]").wait_for(timeout=20_000)
    assert_fits(page)

    page.click("[data-testid=conversations-toggle]")
    sidebar = page.locator("[data-testid=chat-sidebar]")
    assert sidebar.is_visible()
    item = page.locator("[data-testid=conversations] li", has_text="第一个问题")
    item.wait_for()
    item.locator("button").first.click()  # rename
    assert page.is_visible("[data-testid=dialog-input]")
    page.fill("[data-testid=dialog-input]", "改过的标题")
    page.click("[data-testid=dialog-ok]")
    page.wait_for_selector("[data-testid=conversations] li >> text=改过的标题")

    renamed = page.locator("[data-testid=conversations] li", has_text="改过的标题")
    renamed.locator("button").nth(1).click()  # delete
    assert "改过的标题" in page.inner_text("[data-testid=dialog-message]")
    page.click("[data-testid=dialog-cancel]")
    assert renamed.count() == 1
    renamed.locator("button").nth(1).click()
    page.click("[data-testid=dialog-ok]")
    page.wait_for_selector("[data-testid=conversations] li >> text=改过的标题", state="detached")

    page.click("[data-testid=new-chat]")
    assert not sidebar.is_visible()  # the drawer closes to show the new conversation
    assert page.locator("[data-testid=assistant-message]").count() == 0
    page.click("[data-testid=conversations-toggle]")
    assert page.is_visible("[data-testid=chat-search]")

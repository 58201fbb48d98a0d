"""A member chats in headless Chromium: the console as `make run` serves it (two workers, HTTP + WebSocket)
against the test database, and a fake engine registered as a running deployment of the member's department."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from appliance.accounts.models import User
from appliance.chat.tests.factories import R1_DISTILL, running_deployment
from appliance.chat.tests.fake_engine import FakeEngine, Script
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REDIS_URL = "redis://127.0.0.1:6379/11"
ANSWER = [
    "<think>\n", "用户在", "打招呼。", "\n</think>\n\n", "你好！这是 **粗体**，", "公式 $E=mc^2$ 与 $\\sqrt{2}$。\n\n",
    "```python\nprint('hi')\n```\n", "<img src=x onerror=\"window.pwned=1\">",
]  # fmt: skip


@pytest.fixture
def console_env() -> dict[str, str]:
    """The chat's Redis database for the console's channel layer, answers and quotas, emptied first: the
    ids of a new test database start again at 1, and a cached health or answer of the last test's
    deployment or message must not be taken for this one's (as appliance/chat/tests/conftest.py does)."""
    redis.Redis.from_url(REDIS_URL).flushdb()
    return {"CHANNELS_REDIS_URL": REDIS_URL, "CHAT_REDIS_URL": REDIS_URL, "APPLIANCE_QUOTA_REDIS_URL": REDIS_URL}


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    server = FakeEngine(model="deepseek-r1-7b").start()
    yield server
    server.stop()


_STREAMING_TEXT = """([part, text]) => [...document.querySelectorAll(
    `[data-testid=assistant-message][data-status=streaming] ${part}`)].some((e) => e.textContent.includes(text))"""


def _log_in_and_open_chat(page: Any, url: str, username: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    page.click("nav >> text=对话")
    page.wait_for_selector("[data-testid=connection] >> text=已连接")


def test_member_picks_the_model_sends_and_sees_the_answer_stream(
    console_url: str, page: Any, personas: dict[str, User], engine: FakeEngine
) -> None:
    alice = personas["alice"]
    running_deployment(alice.department, alice, engine.model, engine.port, model_slug=R1_DISTILL)
    engine.default = Script(content=ANSWER, delay=0.25)
    _log_in_and_open_chat(page, console_url, "bob")

    page.wait_for_selector(f"[data-testid=model-picker] option[value='{engine.model}']", state="attached")
    page.select_option("[data-testid=model-picker]", engine.model)
    page.select_option("[data-testid=task-picker]", "code")
    assert page.get_attribute("[data-testid=temperature]", "placeholder") == "默认 0.0"
    page.fill("[data-testid=composer]", "你好")
    page.press("[data-testid=composer]", "Enter")

    # The streaming message is redrawn at every batch, so these watch the page itself rather than an element.
    page.wait_for_function(_STREAMING_TEXT, arg=["[data-testid=reasoning] summary", "思考中…"])
    page.wait_for_function(_STREAMING_TEXT, arg=["[data-testid=answer]", "你好！"])  # the answer, still streaming
    assert page.is_visible("[data-testid=stop]")

    done = page.locator("[data-testid=assistant-message][data-status=complete]")
    done.wait_for(timeout=20_000)
    assert done.locator("[data-testid=answer] strong").inner_text() == "粗体"
    assert done.locator(".katex").count() == 2 and done.locator(".katex svg").count() >= 1  # the root's sign
    assert done.locator("pre code.hljs").count() == 1
    assert done.locator("img[onerror]").count() == 0 and page.evaluate("window.pwned") is None
    summary = done.locator("[data-testid=reasoning] summary").inner_text()
    assert re.fullmatch(r"已深度思考（用时 \d+ 秒）", summary), summary
    assert done.locator("[data-testid=reasoning]").get_attribute("open") is None  # folded once answered
    stats = done.locator("[data-testid=stats]").inner_text()
    assert "输入 11 · 输出 8 tokens" in stats and "tokens/秒" in stats and "首字" in stats and "配额" in stats
    assert engine.seen.bodies[-1]["temperature"] == 0.0
    page.wait_for_selector("[data-testid=conversations] li >> text=你好")

    page.reload()  # the conversation is in the address and comes back as it was
    page.locator("[data-testid=assistant-message][data-status=complete] strong").wait_for()
    page.click("[data-testid=regenerate]")
    page.wait_for_function(_STREAMING_TEXT, arg=["[data-testid=answer]", "你好"])
    page.locator("[data-testid=assistant-message][data-status=complete]").wait_for(timeout=20_000)
    assert page.locator("[data-testid=assistant-message]").count() == 1
    assert len(engine.seen.bodies) == 2


def test_a_reload_during_the_answer_picks_it_up(
    console_url: str, page: Any, personas: dict[str, User], engine: FakeEngine
) -> None:
    running_deployment(personas["alice"].department, personas["alice"], engine.model, engine.port)
    words = [f"词{i} " for i in range(30)]
    engine.default = Script(content=words, delay=0.1)
    _log_in_and_open_chat(page, console_url, "bob")
    page.wait_for_selector(f"[data-testid=model-picker] option[value='{engine.model}']", state="attached")
    page.fill("[data-testid=composer]", "数到三十")
    page.click("[data-testid=send]")
    page.wait_for_function(_STREAMING_TEXT, arg=["[data-testid=answer]", "词3"])
    page.wait_for_url(re.compile(r"\?c=\d+"))

    page.reload()
    page.wait_for_function(_STREAMING_TEXT, arg=["[data-testid=answer]", "词"])
    done = page.locator("[data-testid=assistant-message][data-status=complete] [data-testid=answer]")
    done.wait_for(timeout=20_000)
    assert done.inner_text().split() == [w.strip() for w in words]

    page.click("[data-testid=new-chat]")
    assert page.locator("[data-testid=assistant-message]").count() == 0
    page.fill("[data-testid=chat-search]", "三十")
    page.wait_for_selector("[data-testid=conversations] li >> text=数到三十")


def test_an_on_demand_model_starts_with_the_first_message_and_the_page_says_so(
    console_url: str, page: Any, personas: dict[str, User], engine: FakeEngine, seeded_profiles: None
) -> None:
    from appliance.catalog.models import ProfileVersion
    from appliance.deployments.models import Instance
    from appliance.deployments.tests.factories import idle_on_demand, play_node_worker

    version = ProfileVersion.objects.filter(profile__slug="smollm2-cpu").latest("number")
    department = personas["alice"].department
    assert department is not None
    dep = idle_on_demand(department, personas["alice"], engine.model, version, "chat-od-node")
    engine.default = Script(content=["已经", "启动。"])
    _log_in_and_open_chat(page, console_url, "bob")
    option = f"[data-testid=model-picker] option[value='{engine.model}']"
    page.wait_for_selector(option, state="attached")
    assert page.inner_text(option) == f"{engine.model}（发送消息后自动启动）"
    page.fill("[data-testid=composer]", "你好")
    page.click("[data-testid=send]")

    page.wait_for_function(_STREAMING_TEXT, arg=["[data-testid=model-starting]", "正在启动模型…（"])
    deadline = time.monotonic() + 10
    while not Instance.objects.filter(deployment=dep).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # the engine loading its model
    play_node_worker(dep.pk, engine.port)
    done = page.locator("[data-testid=assistant-message][data-status=complete] [data-testid=answer]")
    done.wait_for(timeout=20_000)
    assert done.inner_text() == "已经启动。"
    assert page.locator("[data-testid=model-starting]").count() == 0

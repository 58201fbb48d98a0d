"""Content safety and the AI-generated label in the chat page, in headless Chromium, in both languages."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from appliance.accounts.models import User
from appliance.chat.tests.factories import running_deployment
from appliance.chat.tests.fake_engine import FakeEngine, Script
from appliance.safety import services
from conftest import PASSWORD
from tests.browser.test_chat_flow import console_env, engine  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _word_list(alice: User, lines: str) -> None:
    with transaction.atomic():
        created = services.create_list(alice, name="研发词库", department_id=alice.department_id)
    services.import_words(alice, created.pk, lines)


def _open_chat(page: Any, url: str, connected: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    page.goto(f"{url}/chat/")
    page.wait_for_selector(f"[data-testid=connection] >> text={connected}")


def _ask(page: Any, model: str, text: str) -> None:
    page.wait_for_selector(f"[data-testid=model-picker] option[value='{model}']", state="attached")
    page.fill("[data-testid=composer]", text)
    page.press("[data-testid=composer]", "Enter")


def test_chinese_masked_answer_carries_the_label_and_a_blocked_question_says_why(
    console_url: str,
    page: Any,
    personas: dict[str, User],
    engine: FakeEngine,  # noqa: F811
) -> None:
    alice = personas["alice"]
    running_deployment(alice.department, alice, engine.model, engine.port)
    _word_list(alice, "机密\tblock\n秘密\tmask\n")
    engine.default = Script(content=["这是", "秘", "密", "内容。"], delay=0.05)
    _open_chat(page, console_url, "已连接")
    _ask(page, engine.model, "你好")
    done = page.locator("[data-testid=assistant-message][data-status=complete]")
    done.wait_for(timeout=20_000)
    assert done.locator("[data-testid=answer]").inner_text() == "这是**内容。"
    assert done.locator("[data-testid=ai-label]").inner_text() == "内容由 AI 生成"
    _ask(page, engine.model, "请给我机密文件")
    page.wait_for_selector("[data-testid=chat-error] >> text=已按本单位内容安全规则拦截")
    assert len(engine.seen.bodies) == 1


def test_english_blocked_answer_stops_and_says_why(
    console_url: str,
    browser: Any,
    personas: dict[str, User],
    engine: FakeEngine,  # noqa: F811
) -> None:
    alice = personas["alice"]
    running_deployment(alice.department, alice, engine.model, engine.port)
    _word_list(alice, "forbidden\n")
    engine.default = Script(content=["Fine so far. ", "forb", "idden", *[" more"] * 100], delay=0.05)
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        _open_chat(page, console_url, "Connected")
        _ask(page, engine.model, "hello")
        failed = page.locator("[data-testid=assistant-message][data-status=failed]")
        failed.wait_for(timeout=20_000)
        assert failed.locator("[data-testid=answer]").inner_text().strip() == "Fine so far."
        assert (
            "Blocked by your organisation's content-safety rules."
            in failed.locator("[data-testid=problem]").inner_text()
        )
        assert failed.locator("[data-testid=ai-label]").inner_text() == "AI-generated"
        assert engine.disconnected.wait(5)
    finally:
        context.close()

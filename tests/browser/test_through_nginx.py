"""The console behind nginx as on an appliance (deploy/nginx/, deploy/scripts/run-nginx.sh): TLS with the
certificate it generated, the chat's WebSocket in Chromium, a streamed ``/v1`` answer passed on token by
token, and the client's real address in login throttling and audit records.

The engine here is a double (the chat's fake engine, the gateway's synthetic engine), so these run
everywhere; appliance/deployments/tests/test_live_nginx.py runs the chat through nginx on a real
SmolLM2 deployment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import transaction

from appliance.accounts.models import LoginAttempt, User
from appliance.accounts.services import create_api_key
from appliance.audit.models import AuditRecord
from appliance.chat.tests.factories import running_deployment as chat_deployment
from appliance.chat.tests.fake_engine import FakeEngine, Script
from appliance.gateway.tests.factories import running_deployment as gateway_deployment
from bench.synthetic_upstream import SyntheticUpstream
from conftest import PASSWORD, served_database_url
from tests.served import served_console, served_env, served_nginx, trusting

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
REDIS_URL = "redis://127.0.0.1:6379/11"
CLIENT = "127.0.0.5"  # the browser's address: another loopback address than nginx's own (127.0.0.1)
STRANGER = "127.0.0.6"  # someone who reaches the console's port directly


@pytest.fixture
def stack(transactional_db: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The console (2 workers) trusting the nginx on this machine, and that nginx in front of it."""
    env = served_env(
        DATABASE_URL=served_database_url(),
        CONSOLE_ENV="test",
        CONSOLE_LOG_LEVEL="WARNING",
        APPLIANCE_TRUSTED_PROXIES="127.0.0.1",
        CHANNELS_REDIS_URL=REDIS_URL,
        CHAT_REDIS_URL=REDIS_URL,
        APPLIANCE_QUOTA_REDIS_URL=REDIS_URL,
    )
    with (
        served_console(tmp_path / "console.log", env) as (console, _proc),
        served_nginx(tmp_path / "nginx", console) as (https, cert),
    ):
        yield {"console": console, "https": https, "cert": cert}


def _client(base: str, cert: Path | None, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source, verify=trusting(cert) if cert else True)
    return httpx.Client(base_url=base, transport=transport, timeout=30)


def _failed_login(client: httpx.Client, **headers: str) -> None:
    form = client.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, form.text[:500]
    origin = str(client.base_url).rstrip("/")
    data = {"csrfmiddlewaretoken": token.group(1), "username": "root", "password": "wrong-password-1"}
    resp = client.post("/login/", data=data, headers={"Origin": origin, "Referer": f"{origin}/login/", **headers})
    assert resp.status_code == 200, resp.text[:500]  # the form again, with its error (403: refused by CSRF)


def test_the_client_address_is_the_real_one_and_forged_headers_are_ignored(
    stack: dict[str, Any], personas: dict[str, User]
) -> None:
    with _client(stack["https"], stack["cert"], CLIENT) as through_nginx:
        _failed_login(through_nginx, **{"X-Forwarded-For": "203.0.113.7"})  # nginx replaces it
        with transaction.atomic():
            _key, secret = create_api_key(personas["root"], name="through-nginx")
        created = through_nginx.post(
            "/api/v1/departments/",
            json={"code": "legal", "name": "法务部"},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert created.status_code == 201, created.text
    with _client(stack["console"], None, STRANGER) as direct:
        _failed_login(direct, **{"X-Forwarded-For": "203.0.113.8"})  # not from a trusted proxy: ignored

    assert list(LoginAttempt.objects.order_by("pk").values_list("source_ip", flat=True)) == [CLIENT, STRANGER]
    record = AuditRecord.objects.get(action="department.create")
    assert record.source_ip == CLIENT


def test_a_streamed_v1_answer_comes_through_nginx_token_by_token(
    stack: dict[str, Any], personas: dict[str, User]
) -> None:
    from appliance.gateway.tests.factories import api_key

    engine = SyntheticUpstream(model="paced", tokens=20, token_delay=0.2).start_in_thread()
    try:
        gateway_deployment(personas["bob"].department, personas["root"], "paced", [engine.port])  # type: ignore[arg-type]
        body = {"model": "paced", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 20}
        headers = {"Authorization": f"Bearer {api_key(personas['bob'])}"}
        with (
            _client(stack["https"], stack["cert"], CLIENT) as client,
            client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = []
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    events.append(json.loads(line[6:]))
                    if len(events) == 1:
                        # Unbuffered: the first token is here while the engine still has 19 to send.
                        assert engine.stats.in_flight == 1
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
        assert len(text) > 0 and engine.stats.in_flight == 0
    finally:
        engine.stop_thread()


@pytest.fixture
def tls_page(browser: Any, stack: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(locale="zh-CN", ignore_https_errors=True)  # the generated certificate
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def test_a_chat_in_chromium_through_nginx_over_tls(
    stack: dict[str, Any], tls_page: Any, personas: dict[str, User]
) -> None:
    engine = FakeEngine(model="tls-model").start()
    try:
        chat_deployment(personas["alice"].department, personas["alice"], engine.model, engine.port)
        engine.default = Script(content=[f"词{i} " for i in range(12)], delay=0.1)
        base, page = stack["https"], tls_page
        page.goto(f"{base}/login/")
        page.fill("input[name=username]", "bob")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/chat/")
        page.wait_for_selector("[data-testid=connection] >> text=已连接")  # wss:// through nginx
        page.wait_for_selector(f"[data-testid=model-picker] option[value='{engine.model}']", state="attached")
        page.fill("[data-testid=composer]", "数到十二")
        page.press("[data-testid=composer]", "Enter")
        page.locator("[data-testid=assistant-message][data-status=streaming]").wait_for()
        done = page.locator("[data-testid=assistant-message][data-status=complete] [data-testid=answer]")
        done.wait_for(timeout=30_000)
        assert done.inner_text().split() == [f"词{i}" for i in range(12)]
        assert page.evaluate("location.protocol") == "https:"
    finally:
        engine.stop()

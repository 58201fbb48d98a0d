"""The appliance end to end through nginx over TLS: a SmolLM2 deployment created through the API and started
by a real Celery worker in Docker, the console as `make run` serves it (2 workers) behind nginx
(deploy/scripts/run-nginx.sh), a member chatting in Chromium over https/wss, and a streamed ``/v1`` call
with the ``openai`` client through the same nginx.

Needs the Docker engine and the appliance/llamacpp-cpu image (`make engine`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from appliance.deployments.choices import State
from appliance.deployments.models import Deployment
from appliance.deployments.tests import live
from appliance.deployments.tests.test_live import _create, _wait_state
from appliance.gateway.tests.factories import api_key
from appliance.gpus.choices import NodeState
from appliance.gpus.models import Node
from appliance.images.models import NodeImage
from conftest import PASSWORD
from tests.browser import conftest as browser_fixtures
from tests.served import served_nginx, trusting

browser = browser_fixtures.browser  # the browser fixtures live in tests/browser/conftest.py

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
NODE = live.node_name("tls")


@pytest.fixture(autouse=True)
def _engine_ready(settings: Any) -> None:
    live.require_engine(settings)


@pytest.fixture
def appliance(tmp_path: Path, seeded_profiles: None) -> Iterator[dict[str, Any]]:
    """Worker and beat, the console's web processes trusting nginx, and nginx with TLS in front."""
    with (
        live.console_processes(tmp_path, NODE),
        live.web(tmp_path, NODE, APPLIANCE_TRUSTED_PROXIES="127.0.0.1") as web,
        served_nginx(tmp_path / "nginx", web) as (https, cert),
    ):
        live.wait_until(lambda: Node.objects.filter(name=NODE, state=NodeState.READY).exists(), 60, "node ready")
        live.wait_until(
            lambda: NodeImage.objects.filter(node__name=NODE, tag=live.engine_image()).exists(), 60, "node images"
        )
        yield {"https": https, "cert": cert}


def test_chat_and_a_v1_stream_through_nginx_on_a_real_deployment(
    appliance: dict[str, Any], api_as: Any, departments: dict, personas: dict, browser: Any
) -> None:
    dep_id = _create(api_as("alice"), departments, "smol-tls")
    _wait_state(dep_id, State.RUNNING, 240)
    model = Deployment.objects.get(pk=dep_id).served_model_name
    base = appliance["https"]

    context = browser.new_context(locale="zh-CN", ignore_https_errors=True)  # the generated certificate
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        browser_fixtures.goto(page, f"{base}/login/")
        page.fill("input[name=username]", "bob")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        browser_fixtures.goto(page, f"{base}/chat/")
        page.wait_for_selector("[data-testid=connection] >> text=已连接")
        page.wait_for_selector(f"[data-testid=model-picker] option[value='{model}']", state="attached")
        page.select_option("[data-testid=model-picker]", model)
        page.fill("[data-testid=composer]", "Name a colour.")
        page.press("[data-testid=composer]", "Enter")
        done = page.locator("[data-testid=assistant-message][data-status=complete]")
        done.wait_for(timeout=120_000)
        assert done.locator("[data-testid=answer]").inner_text().strip()
        assert "tokens" in done.locator("[data-testid=stats]").inner_text()
    finally:
        context.close()

    client = openai.OpenAI(
        base_url=f"{base}/v1",
        api_key=api_key(personas["bob"]),
        http_client=httpx.Client(verify=trusting(appliance["cert"]), timeout=120),
        max_retries=0,
    )
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len(pieces) > 1 and "".join(pieces).strip()

"""Issue 12 findings on reservations: ``n``/``best_of`` and batched prompts multiply what the engine
writes, a missing ``max_tokens`` must still reach the engine as a number, and the prompt is reserved
at no less than the engine bills (chat template included, as measured for the deployment)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam

from appliance.accounts.models import User
from appliance.deployments.engine_keys import engine_key
from appliance.deployments.models import Instance
from appliance.gateway.tests.factories import api_key, running_deployment
from appliance.quotas.models import Quota
from bench.synthetic_upstream import SyntheticUpstream

pytestmark = pytest.mark.django_db(transaction=True)
Start = Callable[..., SyntheticUpstream]
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(gateway_url: str, personas: dict[str, User]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=api_key(personas["bob"]), max_retries=0, timeout=20)


def _deploy(personas: dict[str, User], name: str, engine: SyntheticUpstream) -> None:
    running_deployment(personas["bob"].department, personas["root"], name, [engine.port])  # type: ignore[arg-type]


def _budget(personas: dict[str, User], tokens: int, **limits: int) -> None:
    Quota.objects.create(department=personas["bob"].department, tokens_per_day=tokens, **limits)


def test_n_choices_multiply_the_reservation(client: openai.OpenAI, synthetic: Start, personas: dict[str, User]) -> None:
    engine = synthetic(model="n")
    _deploy(personas, "n", engine)
    _budget(personas, 1000, max_tokens_per_request=16)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="n", messages=HI, max_tokens=16, n=100)
    assert caught.value.code == "quota_exceeded"
    assert "tokens_per_day" in caught.value.message and "1000" in caught.value.message
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model="n", prompt="hi", max_tokens=16, best_of=100)
    assert engine.stats.requests == 0


def test_batched_prompts_multiply_the_reservation(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    engine = synthetic(model="batch")
    _deploy(personas, "batch", engine)
    _budget(personas, 1000, max_tokens_per_request=16)
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model="batch", prompt=["hi"] * 200, max_tokens=16)
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model="batch", prompt=[[1, 2, 3]] * 200, max_tokens=16)
    assert engine.stats.requests == 0


def test_without_max_tokens_the_engine_is_sent_the_default(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    engine = synthetic(model="dflt", tokens=2)
    _deploy(personas, "dflt", engine)
    client.chat.completions.create(model="dflt", messages=HI)
    client.completions.create(model="dflt", prompt="hi")
    assert [b.get("max_tokens") for b in engine.stats.bodies] == [settings.APPLIANCE_GATEWAY_DEFAULT_MAX_TOKENS] * 2


def test_a_client_max_completion_tokens_is_kept_and_no_second_limit_is_added(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    engine = synthetic(model="mct", tokens=2)
    _deploy(personas, "mct", engine)
    client.chat.completions.create(model="mct", messages=HI, max_completion_tokens=3)
    assert engine.stats.bodies[-1].get("max_completion_tokens") == 3


def test_the_measured_template_counts_in_the_prompt_reservation(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    """A short message under a real chat template bills 20-30 tokens, not the 5 the old estimate held."""
    engine = synthetic(model="tmpl", tokens=1)
    _deploy(personas, "tmpl", engine)
    Instance.objects.filter(deployment__served_model_name="tmpl").update(template_tokens=40, message_tokens=6)
    _budget(personas, 43)  # 40 + "hi" (2 bytes + 1) + 1 completion token = 44
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="tmpl", messages=HI, max_tokens=1)
    assert engine.stats.requests == 0


def test_the_engine_is_locked_and_the_gateway_sends_its_key(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    """Issue 12: engines accepted any request; now they want the deployment's key, which only the console holds."""
    engine = synthetic(model="locked", tokens=2)
    dep = running_deployment(personas["bob"].department, personas["root"], "locked", [engine.port])  # type: ignore[arg-type]
    engine.api_key = engine_key(dep.pk)
    direct = httpx.post(f"{engine.base_url}/v1/chat/completions", json={"model": "locked", "messages": HI})
    assert direct.status_code == 401
    answer = client.chat.completions.create(model="locked", messages=HI, max_tokens=2)
    assert answer.choices[0].message.content
    assert engine.stats.requests == 2


def _image_chat(url: str) -> list[ChatCompletionMessageParam]:
    parts = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "user", "content": parts}]  # type: ignore[list-item,misc]


def test_image_urls_are_refused_unless_the_department_lists_their_domain(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    """Issue 12: vLLM was passed image_urls unchecked, so any user could make it fetch internal URLs (SSRF)."""
    engine = synthetic(model="vision", tokens=1)
    _deploy(personas, "vision", engine)
    department = personas["bob"].department
    assert department is not None
    department.allowed_media_domains = ["images.example.com"]
    department.save(update_fields=["allowed_media_domains"])
    refused = ("http://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "https://evil.example/a.png")
    for url in (*refused, "https://images.example.com.evil.example/a.png", "https://user@evil.example/a.png"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="vision", messages=_image_chat(url), max_tokens=1)
        assert caught.value.code == "image_url_not_allowed" and "image_url" in caught.value.message
    for url in ("data:image/png;base64,iVBORw0KGgo=", "https://images.example.com/a.png"):
        client.chat.completions.create(model="vision", messages=_image_chat(url), max_tokens=1)
    assert engine.stats.requests == 2

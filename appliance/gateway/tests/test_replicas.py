"""Several replicas of one model: least in flight, retry before the first byte, all down, quota refusal."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from appliance.accounts.models import User
from appliance.gateway.tests.conftest import free_port, wait_for
from appliance.gateway.tests.factories import api_key, running_deployment
from appliance.quotas.models import Quota
from bench.synthetic_upstream import TOKEN, SyntheticUpstream

pytestmark = pytest.mark.django_db(transaction=True)
Start = Callable[..., SyntheticUpstream]
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(gateway_url: str, personas: dict[str, User]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=api_key(personas["bob"]), max_retries=0, timeout=20)


def _deploy(personas: dict[str, User], name: str, ports: list[int]) -> None:
    running_deployment(personas["bob"].department, personas["root"], name, ports)  # type: ignore[arg-type]


def test_a_new_request_goes_to_the_replica_with_fewer_in_flight(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    a, b = synthetic(model="r", token_delay=0.02), synthetic(model="r", token_delay=0.02)
    _deploy(personas, "r", [a.port, b.port])
    held = client.chat.completions.create(model="r", messages=HI, max_tokens=300, stream=True)
    next(iter(held))  # one stream in flight on one replica
    busy, idle = (a, b) if a.stats.in_flight else (b, a)
    for _ in range(3):
        quick = client.chat.completions.create(model="r", messages=HI, max_tokens=2)
        assert quick.choices[0].message.content == TOKEN * 2
    assert (busy.stats.requests, idle.stats.requests) == (1, 3)
    held.close()
    wait_for(lambda: busy.stats.in_flight == 0, what="the held stream to end")


def test_a_replica_that_refuses_connections_is_skipped_before_the_first_byte(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    live = synthetic(model="half")
    _deploy(personas, "half", [free_port(), live.port])  # nothing listens on the first
    for _ in range(4):
        answer = client.chat.completions.create(model="half", messages=HI, max_tokens=2)
        assert answer.choices[0].message.content == TOKEN * 2
        streamed = client.chat.completions.create(model="half", messages=HI, max_tokens=2, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == TOKEN * 2
    assert live.stats.requests == 8


def test_no_replica_answering_is_503(client: openai.OpenAI, personas: dict[str, User]) -> None:
    _deploy(personas, "gone", [free_port(), free_port()])
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gone", messages=HI)
    assert caught.value.status_code == 503
    assert caught.value.code == "no_healthy_upstream"


def test_an_engine_error_is_passed_on_in_openai_shape(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    engine = synthetic(model="err")
    _deploy(personas, "err", [engine.port])
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="err", messages=HI, extra_body={"synthetic": {"status": 500}})
    assert caught.value.status_code == 502
    assert caught.value.message == "synthetic failure" or "synthetic failure" in str(caught.value)


def test_quota_refusal_is_429_with_retry_after(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    engine = synthetic(model="q")
    _deploy(personas, "q", [engine.port])
    Quota.objects.create(department=personas["bob"].department, requests_per_minute=1)
    client.chat.completions.create(model="q", messages=HI, max_tokens=1)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="q", messages=HI, max_tokens=1)
    assert caught.value.code == "rate_limited"
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    assert engine.stats.requests == 1


def test_max_tokens_above_the_quota_cap_is_400_and_the_cap_is_the_default(
    client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    engine = synthetic(model="cap")
    _deploy(personas, "cap", [engine.port])
    Quota.objects.create(department=personas["bob"].department, max_tokens_per_request=4)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="cap", messages=HI, max_tokens=50)
    assert caught.value.code == "max_tokens_exceeded"
    answer = client.chat.completions.create(model="cap", messages=HI)
    assert answer.choices[0].message.content == TOKEN * 4
    assert engine.stats.bodies[-1]["max_tokens"] == 4

"""End to end: the real ``openai`` client → the console as deployed (manage.py serve) → synthetic engines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from appliance.accounts.models import User
from appliance.gateway.tests.conftest import wait_for
from appliance.gateway.tests.factories import api_key, running_deployment
from appliance.quotas import drain
from appliance.quotas.models import UsageRecord
from bench.synthetic_upstream import TOKEN, SyntheticUpstream

pytestmark = pytest.mark.django_db(transaction=True)
Start = Callable[..., SyntheticUpstream]


@pytest.fixture
def bob_client(gateway_url: str, personas: dict[str, User]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=api_key(personas["bob"]), max_retries=0, timeout=20)


@pytest.fixture
def engine(synthetic: Start, personas: dict[str, User]) -> SyntheticUpstream:
    """One synthetic replica of ``m1`` in bob's department (eng)."""
    server = synthetic(model="m1", tokens=8)
    running_deployment(personas["bob"].department, personas["root"], "m1", [server.port])  # type: ignore[arg-type]
    return server


def test_models_lists_the_running_deployments_the_department_may_use(
    bob_client: openai.OpenAI, engine: SyntheticUpstream, synthetic: Start, personas: dict[str, User]
) -> None:
    other = synthetic(model="fin-only")
    running_deployment(personas["charlie"].department, personas["root"], "fin-only", [other.port])  # type: ignore[arg-type]
    listed = bob_client.models.list()
    assert [m.id for m in listed.data] == ["m1"]
    assert listed.data[0].object == "model"
    assert bob_client.models.retrieve("m1").id == "m1"
    with pytest.raises(openai.NotFoundError):
        bob_client.models.retrieve("fin-only")


def test_chat_whole_answer_relays_the_engine_and_reports_overhead(
    bob_client: openai.OpenAI, engine: SyntheticUpstream
) -> None:
    raw = bob_client.chat.completions.with_raw_response.create(
        model="m1", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == TOKEN * 5
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    assert float(raw.headers["X-Console-Overhead-Ms"]) >= 0
    assert raw.headers["X-Request-ID"]
    assert "stream_options" not in engine.stats.bodies[-1]


def test_chat_stream_relays_chunks_and_strips_the_usage_chunk_it_added(
    bob_client: openai.OpenAI, engine: SyntheticUpstream
) -> None:
    stream = bob_client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hi"}], max_tokens=6, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TOKEN * 6
    assert all(c.usage is None for c in chunks)
    assert engine.stats.bodies[-1]["stream_options"] == {"include_usage": True}


def test_chat_stream_keeps_usage_when_the_client_asks(bob_client: openai.OpenAI, engine: SyntheticUpstream) -> None:
    stream = bob_client.chat.completions.create(
        model="m1",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_completions_stream_and_whole(bob_client: openai.OpenAI, engine: SyntheticUpstream) -> None:
    whole = bob_client.completions.create(model="m1", prompt="Once", max_tokens=4)
    assert whole.choices[0].text == TOKEN * 4
    streamed = bob_client.completions.create(model="m1", prompt="Once", max_tokens=4, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == TOKEN * 4


def test_unknown_model_is_404_in_openai_shape(bob_client: openai.OpenAI, engine: SyntheticUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        bob_client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert caught.value.body["param"] == "model"  # type: ignore[index]


def test_bad_key_is_401(gateway_url: str, engine: SyntheticUpstream) -> None:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="ak_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "invalid_api_key"
    assert engine.stats.requests == 0


def test_bad_body_is_400_after_the_key_is_checked(gateway_url: str, personas: dict[str, User]) -> None:
    url = f"{gateway_url}/v1/chat/completions"
    good = {"Authorization": f"Bearer {api_key(personas['bob'])}"}
    bad = httpx.post(url, content=b"{not json", headers=good)
    assert bad.status_code == 400
    assert set(bad.json()["error"]) == {"message", "type", "code", "param"}
    assert "X-Console-Overhead-Ms" in bad.headers
    missing = httpx.post(url, json={"model": "m1"}, headers=good)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    assert httpx.post(url, content=b"{not json", headers={"Authorization": "Bearer ak_x"}).status_code == 401


def _drained_records(**filters: Any) -> list[UsageRecord]:
    drain.drain()
    return list(UsageRecord.objects.filter(**filters))


def test_client_disconnect_closes_the_upstream_request_and_settles(
    bob_client: openai.OpenAI, synthetic: Start, personas: dict[str, User]
) -> None:
    slow = synthetic(model="slow", token_delay=0.02)
    running_deployment(personas["bob"].department, personas["root"], "slow", [slow.port])  # type: ignore[arg-type]
    stream = bob_client.chat.completions.create(
        model="slow", messages=[{"role": "user", "content": "hi"}], max_tokens=500, stream=True
    )
    for index, _chunk in enumerate(stream):
        if index == 3:
            break
    stream.close()
    wait_for(lambda: slow.stats.disconnects == 1, what="the engine to see the client leave")
    assert slow.stats.completed == 0
    records = wait_for(lambda: _drained_records(model="slow"), what="the usage record")
    assert records[0].status == "cancelled"
    assert 3 <= records[0].completion_tokens < 500


def test_usage_record_of_a_finished_stream_has_the_engine_counts(
    bob_client: openai.OpenAI, engine: SyntheticUpstream
) -> None:
    list(
        bob_client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=7
        )
    )
    record = wait_for(lambda: _drained_records(model="m1"), what="the usage record")[0]
    assert (record.status, record.completion_tokens) == ("ok", 7)
    assert record.deployment_id is not None and record.api_key_id is not None


def test_the_fast_path_keeps_the_request_id_and_answers_unknown_routes(gateway_url: str) -> None:
    answer = httpx.get(f"{gateway_url}/v1/embeddings", headers={"X-Request-ID": "client-chosen-id-1"})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_url"
    assert answer.headers["X-Request-ID"] == "client-chosen-id-1"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Console-Overhead-Ms" in answer.headers

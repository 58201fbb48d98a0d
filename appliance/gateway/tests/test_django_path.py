"""The gateway's views through Django's own handler and middleware, as when the ASGI fast path is off."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest

from appliance.accounts.models import User
from appliance.gateway.tests.conftest import wait_for
from appliance.gateway.tests.factories import api_key, running_deployment
from bench.synthetic_upstream import TOKEN, SyntheticUpstream

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def engine(synthetic: Callable[..., SyntheticUpstream], personas: dict[str, User]) -> SyntheticUpstream:
    server = synthetic(model="dj", tokens=8, token_delay=0.01)
    running_deployment(personas["bob"].department, personas["root"], "dj", [server.port])  # type: ignore[arg-type]
    return server


@pytest.fixture
def client(django_path_url: str, personas: dict[str, User]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{django_path_url}/v1", api_key=api_key(personas["bob"]), max_retries=0, timeout=20)


def test_models_whole_and_streamed_answers(client: openai.OpenAI, engine: SyntheticUpstream) -> None:
    assert [m.id for m in client.models.list().data] == ["dj"]
    raw = client.chat.completions.with_raw_response.create(
        model="dj", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert raw.parse().choices[0].message.content == TOKEN * 3
    assert "X-Console-Overhead-Ms" in raw.headers and raw.headers["X-Request-ID"]
    # The gateway always sends a max_tokens (issue 12); the engine writes exactly that many here.
    streamed = client.chat.completions.create(
        model="dj", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=8
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == TOKEN * 8


def test_errors_and_disconnect(django_path_url: str, client: openai.OpenAI, engine: SyntheticUpstream) -> None:
    assert httpx.get(f"{django_path_url}/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    stream = client.chat.completions.create(
        model="dj", messages=[{"role": "user", "content": "hi"}], max_tokens=500, stream=True
    )
    next(iter(stream))
    stream.close()
    wait_for(lambda: engine.stats.disconnects == 1, what="the engine to see the client leave")

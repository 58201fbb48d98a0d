"""The gateway in front of the real engine: llama-server (appliance/llamacpp-cpu) with SmolLM2 in a container.

Needs a Docker engine and the appliance/llamacpp-cpu image (deploy/engine-image/); skipped without
either. The container is started here directly; the deployment that routes to it is a row, as in
the other gateway tests (the deployment lifecycle's own live test is the deployments app's).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from appliance.accounts.models import User
from appliance.engines.flags import LLAMACPP_IMAGE
from appliance.gateway.tests.conftest import free_port, wait_for
from appliance.gateway.tests.factories import api_key, running_deployment
from appliance.quotas import drain
from appliance.quotas.models import UsageRecord

docker = pytest.importorskip("docker")

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

MODEL = "smollm2-135m-instruct-q4_1"  # the image's --model_alias
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def smollm2() -> Iterator[int]:
    """The engine container on a free loopback port, removed afterwards."""
    try:
        client = docker.from_env()
        client.ping()
        client.images.get(LLAMACPP_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{LLAMACPP_IMAGE} is not built (deploy/engine-image/)")
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    port = free_port()
    container = client.containers.run(
        LLAMACPP_IMAGE, detach=True, name=f"gateway-live-{uuid.uuid4().hex[:8]}",
        ports={"8080/tcp": ("127.0.0.1", port)}, labels={"appliance.test": "gateway"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail(f"the engine did not start: {container.logs(tail=30).decode(errors='replace')}")
        yield port
    finally:
        container.remove(force=True)
        client.close()


@pytest.fixture
def client(gateway_url: str, smollm2: int, personas: dict[str, User]) -> openai.OpenAI:
    running_deployment(personas["bob"].department, personas["root"], MODEL, [smollm2])  # type: ignore[arg-type]
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=api_key(personas["bob"]), max_retries=0, timeout=120)


def _records(**filters: Any) -> list[UsageRecord]:
    drain.drain()
    return list(UsageRecord.objects.filter(**filters))


def test_whole_answer_from_the_engine_with_its_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=8, temperature=0)
    assert answer.choices[0].message.content
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 8
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_stream_carries_the_engines_usage_when_asked(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=HI, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == len(texts)
    record = wait_for(lambda: _records(model=MODEL, status="ok"), timeout=10, what="the usage record")[-1]
    assert record.completion_tokens == len(texts)


def test_completion_and_a_client_that_leaves_mid_stream(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=4, temperature=0)
    assert whole.choices[0].text
    stream = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=200, stream=True)
    next(iter(stream))
    stream.close()
    record = wait_for(lambda: _records(model=MODEL, status="cancelled"), timeout=20, what="the cancelled record")
    assert record[0].completion_tokens < 200

"""Ollama deployments through the gateway: OpenAI in, Ollama's native API to the engine, OpenAI out."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from appliance.accounts.models import User
from appliance.gateway.tests.factories import api_key, running_deployment
from bench.synthetic_upstream import TOKEN, SyntheticUpstream

pytestmark = pytest.mark.django_db(transaction=True)
HI: list[ChatCompletionMessageParam] = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


@pytest.fixture
def ollama(synthetic: Callable[..., SyntheticUpstream], personas: dict[str, User]) -> SyntheticUpstream:
    server = synthetic(model="qwen-o")
    running_deployment(personas["bob"].department, personas["root"], "qwen-o", [server.port], engine="ollama")  # type: ignore[arg-type]
    return server


@pytest.fixture
def client(gateway_url: str, personas: dict[str, User]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=api_key(personas["bob"]), max_retries=0, timeout=20)


def test_chat_is_sent_to_api_chat_with_options(client: openai.OpenAI, ollama: SyntheticUpstream) -> None:
    answer = client.chat.completions.create(
        model="qwen-o", messages=HI, max_tokens=3, temperature=0.6, stop=["\n\n"], seed=7
    )
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content == TOKEN * 3
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    sent = ollama.stats.bodies[-1]
    assert ollama.stats.paths[-1] == "/api/chat"
    assert sent["options"] == {"num_predict": 3, "temperature": 0.6, "seed": 7, "stop": ["\n\n"]}
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert sent["stream"] is False


def test_chat_stream_with_thinking_and_usage(client: openai.OpenAI, ollama: SyntheticUpstream) -> None:
    chunks = list(
        client.chat.completions.create(
            model="qwen-o",
            messages=HI,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"think": True},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == TOKEN * 4
    assert [getattr(d, "reasoning_content", None) for d in deltas if getattr(d, "reasoning_content", None)] == ["hmm"]
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert ollama.stats.bodies[-1]["think"] is True


def test_completion_is_sent_raw_to_api_generate(client: openai.OpenAI, ollama: SyntheticUpstream) -> None:
    whole = client.completions.create(model="qwen-o", prompt="Once upon", max_tokens=2)
    assert whole.object == "text_completion" and whole.choices[0].text == TOKEN * 2
    streamed = list(client.completions.create(model="qwen-o", prompt="Once upon", max_tokens=2, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == TOKEN * 2
    assert all(c.usage is None for c in streamed)
    assert ollama.stats.paths[-2:] == ["/api/generate", "/api/generate"]
    assert ollama.stats.bodies[-1]["raw"] is True and ollama.stats.bodies[-1]["prompt"] == "Once upon"

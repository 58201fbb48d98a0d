"""The prompt bound and the template measurement, against an engine double that bills like a template."""

from __future__ import annotations

import json
from typing import Any

import httpx

from appliance.engines import LlamaServerEngine, OllamaEngine, VllmEngine
from appliance.engines.prompt import TemplateCost, measure, message_bound, text_bound

SYSTEM, MARKERS = 21, 5  # a default system prompt and each message's role markers, as SmolLM2's template has


def templated_engine(status: int = 200) -> httpx.Client:
    """Bills a chat as the template would: system prompt, markers per message, one token per byte."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert request.url.path == "/v1/chat/completions" and body["max_tokens"] == 1
        messages = body["messages"]
        billed = SYSTEM + sum(MARKERS + len(m["content"].encode()) for m in messages)
        return httpx.Response(status, json={"usage": {"prompt_tokens": billed, "completion_tokens": 1}})

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_the_measured_template_is_never_below_what_the_engine_bills() -> None:
    with templated_engine() as client:
        cost = measure("http://engine", client, "m")
    assert cost == TemplateCost(template=SYSTEM + MARKERS + 1, per_message=MARKERS + 1)
    for texts in (["hi"], ["你好" * 50, "ok", "再见"], ["", "", "", ""]):
        messages = [{"role": "user", "content": t} for t in texts]
        billed = SYSTEM + sum(MARKERS + len(t.encode()) for t in texts)
        assert sum(message_bound(m) for m in messages) + cost.chat(len(messages)) >= billed


def test_an_engine_that_does_not_say_gives_no_measurement() -> None:
    with templated_engine(status=500) as client:
        assert measure("http://engine", client, "m") is None
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json={}))) as client:
        assert measure("http://engine", client, "m") is None


def test_text_bound_is_a_byte_count() -> None:
    assert (text_bound(""), text_bound("hi"), text_bound("你好"), text_bound("🙂")) == (1, 3, 7, 5)


def test_ollama_measurement_never_goes_below_the_allowance(settings: Any) -> None:
    """Ollama's counts leave out a prefix it had cached, so its measurement may be low: floored."""
    from appliance.deployments.node import measured_template

    with templated_engine() as client:
        assert measured_template(VllmEngine(), "http://e", client, "m") == TemplateCost(SYSTEM + MARKERS + 1, 6)
        assert measured_template(LlamaServerEngine(), "http://e", client, "m") == TemplateCost(27, 6)
        floored = measured_template(OllamaEngine(), "http://e", client, "m")
    assert floored == TemplateCost(
        max(27, settings.APPLIANCE_TEMPLATE_TOKENS), max(6, settings.APPLIANCE_MESSAGE_TOKENS)
    )

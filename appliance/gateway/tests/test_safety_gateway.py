"""Content-safety rules on /v1, end to end: real client → daphne → synthetic engine (which answers " tok" × n)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest
from django.db import transaction

from appliance.accounts.models import User
from appliance.gateway.tests.conftest import CONSOLE_ID, wait_for
from appliance.gateway.tests.factories import api_key, running_deployment
from appliance.safety import labels, services
from appliance.safety.choices import BLOCKED_CODE, Action, Channel, Stage
from appliance.safety.models import SafetyHit
from bench.synthetic_upstream import TOKEN, SyntheticUpstream

pytestmark = pytest.mark.django_db(transaction=True)
Start = Callable[..., SyntheticUpstream]


@pytest.fixture
def engine(synthetic: Start, personas: dict[str, User]) -> SyntheticUpstream:
    server = synthetic(model="m1", tokens=40, token_delay=0.005)
    running_deployment(personas["bob"].department, personas["root"], "m1", [server.port])  # type: ignore[arg-type]
    return server


def word_list(actor: User, department_id: int | None, lines: str) -> None:
    with transaction.atomic():
        created = services.create_list(actor, name="words", department_id=department_id)
    services.import_words(actor, created.pk, lines, default_action=Action.BLOCK)


def stream_text(client: openai.OpenAI, prompt: str = "hi") -> str:
    stream = client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": prompt}], max_tokens=40, stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_a_word_split_over_streamed_chunks_is_masked_and_recorded(
    gateway_url: str, engine: SyntheticUpstream, personas: dict[str, User]
) -> None:
    # "ok t" spans two of the engine's chunks (" tok" + " tok"): only a scanner that holds back finds it.
    word_list(personas["alice"], personas["bob"].department_id, "ok t\tmask\n")
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=api_key(personas["bob"]), max_retries=0)
    text = stream_text(client)
    # Every "ok t" masked: all from the first "o" to the last " t", the length of the engine's answer kept.
    assert text == " t" + "*" * (len(TOKEN) * 40 - 4) + "ok"
    hits = wait_for(lambda: list(SafetyHit.objects.filter(stage=Stage.ANSWER)), what="hits recorded")
    assert len(hits) == 39
    assert {(h.user_id, h.department_id, h.list_name, h.word, h.action, h.channel, h.excerpt) for h in hits} == {
        (personas["bob"].pk, personas["bob"].department_id, "words", "ok t", Action.MASK, Channel.GATEWAY, "")
    }


def test_a_blocked_prompt_is_refused_in_the_callers_language_and_never_reaches_the_engine(
    gateway_url: str, engine: SyntheticUpstream, personas: dict[str, User]
) -> None:
    word_list(personas["root"], None, "# platform list\n机密\n")
    body = {"model": "m1", "messages": [{"role": "user", "content": "请告诉我机密文件"}]}
    headers = {"Authorization": f"Bearer {api_key(personas['bob'])}"}
    zh = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, headers=headers)
    en = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, headers={**headers, "Accept-Language": "en"})
    assert zh.status_code == en.status_code == 400
    assert zh.json()["error"]["code"] == en.json()["error"]["code"] == BLOCKED_CODE
    assert "内容安全" in zh.json()["error"]["message"]
    assert "content-safety" in en.json()["error"]["message"]
    assert engine.stats.requests == 0
    hits = wait_for(lambda: list(SafetyHit.objects.all()) if SafetyHit.objects.count() == 2 else None, what="hits")
    assert {(h.stage, h.action, h.word) for h in hits} == {(Stage.PROMPT, Action.BLOCK, "机密")}


def test_a_blocked_answer_stops_the_engine_and_ends_with_an_error_event(
    gateway_url: str, engine: SyntheticUpstream, personas: dict[str, User]
) -> None:
    word_list(personas["alice"], personas["bob"].department_id, "tok tok tok tok tok\n")
    headers = {"Authorization": f"Bearer {api_key(personas['bob'])}", "Accept-Language": "en"}
    body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40, "stream": True}
    with httpx.stream("POST", f"{gateway_url}/v1/chat/completions", json=body, headers=headers) as response:
        raw = response.read().decode()
    assert '"code":"content_blocked"' in raw and "content-safety" in raw
    assert raw.endswith("data: [DONE]\n\n")
    assert raw.count(TOKEN) < 5  # only the text before the word went out
    wait_for(lambda: engine.stats.disconnects == 1, what="the engine's request closed")
    assert engine.stats.completed == 0


def test_rules_of_another_department_do_not_apply_and_a_whole_answer_is_masked(
    gateway_url: str, engine: SyntheticUpstream, personas: dict[str, User]
) -> None:
    word_list(personas["dave"], personas["dave"].department_id, "tok\n")  # finance's list: not bob's
    word_list(personas["alice"], personas["bob"].department_id, "TOK\tmask\n")
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=api_key(personas["bob"]), max_retries=0)
    answer = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert answer.choices[0].message.content == " ***" * 3


def test_answers_name_the_model_and_appliance_unless_the_department_opted_out(
    gateway_url: str, engine: SyntheticUpstream, personas: dict[str, User]
) -> None:
    headers = {"Authorization": f"Bearer {api_key(personas['bob'])}"}
    body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    whole = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, headers=headers)
    with httpx.stream(
        "POST", f"{gateway_url}/v1/chat/completions", json={**body, "stream": True}, headers=headers
    ) as streamed:
        streamed.read()
    expected = f'model="m1"; appliance="{CONSOLE_ID}"'  # the CONSOLE_ID daphne runs with
    assert whole.headers["X-AI-Generated"] == streamed.headers["X-AI-Generated"] == expected
    with transaction.atomic():
        labels.set_shown(personas["alice"], personas["bob"].department_id, False)
    other = api_key(personas["bob"])  # a new key is a new cache entry in daphne as well
    later = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {other}"})
    assert later.status_code == 200 and "X-AI-Generated" not in later.headers

"""The /v1 stream screen without a server: whatever the reads' sizes, the same text is screened and shown.

The screen works on each read's raw bytes (one or two scanner pieces a read), so these tests cut one
answer into reads in many ways -- an event per read, many per read, events split inside -- and check
that a word is found across every boundary, masked or cut the same way, and that clean events go out
byte for byte.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from appliance.gateway import screening
from appliance.gateway.screening import SseScreen
from appliance.safety import recording
from appliance.safety.choices import BLOCKED_CODE, Action, Channel
from appliance.safety.matcher import Hit, Matcher, Rule

RULES = [
    Rule(1, 1, "platform", "敏感词", Action.BLOCK),
    Rule(2, 1, "platform", "secret", Action.MASK),
    Rule(3, 2, "dept", "note", Action.RECORD),
    Rule(4, 1, "platform", "forbidden topic", Action.BLOCK),
]
DONE = b"data: [DONE]\n\n"
CONTEXT = recording.Context(1, "bob", 1, Channel.GATEWAY, "m1", "req")


@pytest.fixture(autouse=True)
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Hit]]]:
    """Hits the screen would write (no database, no event loop here)."""
    written: list[tuple[str, list[Hit]]] = []
    monkeypatch.setattr(screening, "record_later", lambda _context, stage, hits: written.append((stage, hits)))
    return written


def event(text: str | None, field: str = "content", escape: bool = False) -> bytes:
    delta: dict[str, Any] = {} if text is None else {field: text}
    choice: dict[str, Any] = {"index": 0, "text": text} if field == "text" else {"index": 0, "delta": delta}
    payload = {"id": "c1", "object": "chat.completion.chunk", "model": "m1", "choices": [choice]}
    return b"data: " + json.dumps(payload, ensure_ascii=escape).encode() + b"\n\n"


def answer(tokens: list[str], **kwargs: Any) -> bytes:
    return event("", **kwargs) + b"".join(event(t, **kwargs) for t in tokens) + event(None) + DONE


def reads(data: bytes, sizes: str, seed: int = 0) -> list[bytes]:
    """``data`` cut as the relay might hand it over: an event per read, all at once, or at random points."""
    if sizes == "event":
        return [part + b"\n\n" for part in data.split(b"\n\n")[:-1]]
    if sizes == "whole":
        return [data]
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 12)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def screened(data: bytes, sizes: str, seed: int = 0) -> tuple[bytes, SseScreen]:
    screen = SseScreen(Matcher(RULES), CONTEXT, "en")
    out = []
    for part in reads(data, sizes, seed):
        out.append(screen.feed(part))
        if screen.blocked:
            break
    else:
        out.append(screen.finish())
    return b"".join(out), screen


def shown(raw: bytes, field: str = "content") -> str:
    """The text a client sees, from the events it received (each must be valid JSON)."""
    text = []
    for part in raw.split(b"\n\n")[:-1]:
        body = part.partition(b"data: ")[2]
        if body == b"[DONE]":
            continue
        for choice in json.loads(body).get("choices", []):
            text.append((choice.get("delta") or {}).get(field) or choice.get("text") or "")
    return "".join(text)


CUTS = [("event", 0), ("whole", 0), *[("random", seed) for seed in range(8)]]


@pytest.mark.parametrize(("sizes", "seed"), CUTS)
def test_a_clean_answer_goes_out_byte_for_byte_however_it_is_read(sizes: str, seed: int) -> None:
    data = answer(["Hello", " world", "，这是", "一个", "回答", "."] * 5)
    out, screen = screened(data, sizes, seed)
    assert out == data
    assert screen.scanner.hits == []


@pytest.mark.parametrize(("sizes", "seed"), CUTS)
def test_a_word_across_events_and_reads_is_masked_and_recorded(
    sizes: str, seed: int, recorded: list[tuple[str, list[Hit]]]
) -> None:
    data = answer(["The ", "se", "c", "ret", " is a ", "no", "te", " (SECR", "ET)", " end"])
    out, screen = screened(data, sizes, seed)
    assert shown(out) == "The ****** is a note (******) end"
    assert out.endswith(DONE) and out.count(b"\n\n") == data.count(b"\n\n")  # no event lost or added
    assert [(h.action, h.rules[0].word) for h in screen.scanner.hits] == [
        (Action.MASK, "secret"),
        (Action.RECORD, "note"),
        (Action.MASK, "secret"),
    ]
    assert [stage for stage, _hits in recorded] == ["answer"]


@pytest.mark.parametrize(("sizes", "seed"), CUTS)
def test_a_blocking_word_across_reads_keeps_only_the_text_before_it(sizes: str, seed: int) -> None:
    data = answer(["前面", "的话，敏", "感", "词和后面的话", "，更多"])
    out, screen = screened(data, sizes, seed)
    assert screen.blocked
    assert shown(out) == "前面的话，"
    assert "后面" not in out.decode()
    error = json.loads(out.split(b"\n\n")[-3].partition(b"data: ")[2])
    assert error["error"]["code"] == BLOCKED_CODE and out.endswith(DONE)


@pytest.mark.parametrize(("sizes", "seed"), CUTS)
def test_escaped_text_reasoning_and_completions_are_screened(sizes: str, seed: int) -> None:
    escaped = answer(["line\n", '"se', 'cret"', " and 敏", "感词 after"], escape=True)  # \n, \", \uXXXX
    out, _screen = screened(escaped, sizes, seed)
    assert shown(out) == 'line\n"******" and '
    reasoning = answer(["think: se", "cret"], field="reasoning_content")
    out, _screen = screened(reasoning, sizes, seed)
    assert shown(out, "reasoning_content") == "think: ******"
    completion = answer(["a se", "cret b"], field="text")
    out, _screen = screened(completion, sizes, seed)
    assert shown(out) == "a ****** b"


def test_a_read_waits_only_until_enough_text_follows_it() -> None:
    # The longest word has 15 characters: a read goes out once 14 characters follow it. A read of one
    # event (the engine's pace) is held by a token or two; a read of several (the console was behind
    # the engine) is held as one, until the next read brings enough text.
    screen = SseScreen(Matcher(RULES), CONTEXT, "en")
    assert shown(screen.feed(event("0123456789"))) == ""
    assert shown(screen.feed(event("abcdefghij"))) == ""  # 10 characters after the first: not enough
    assert shown(screen.feed(event("ABCDEFGHIJ"))) == "0123456789"
    several = b"".join(event(t) for t in ["klmnopqrst", "KLMNOPQRST"])
    assert shown(screen.feed(several)) == "abcdefghijABCDEFGHIJ"
    assert shown(screen.feed(event("uvw"))) == ""  # 3 characters after the read of two: it waits
    assert shown(screen.feed(DONE)) == "klmnopqrstKLMNOPQRSTuvw"


def test_after_a_block_nothing_more_goes_out(recorded: list[tuple[str, list[Hit]]]) -> None:
    screen = SseScreen(Matcher(RULES), CONTEXT, "en")
    out = screen.feed(answer(["a forbidden", " topic", " b"]))
    assert shown(out) == "a " and screen.blocked
    assert screen.feed(event("more")) == b""
    assert len(recorded) == 1 and recorded[0][1][0].action == Action.BLOCK


@pytest.mark.parametrize(("sizes", "seed"), CUTS)
def test_text_fields_the_relay_found_give_the_same_answer(sizes: str, seed: int) -> None:
    from appliance.engines.sse import TEXT_VALUE

    data = answer(["A top sec", "ret", " note", "，不是", "敏感", "的", "。"] * 3)
    plain, relayed = SseScreen(Matcher(RULES), CONTEXT, "en"), SseScreen(Matcher(RULES), CONTEXT, "en")
    out_plain, out_relayed = [], []
    for part in reads(data, sizes, seed):
        out_plain.append(plain.feed(part))
        whole = part.endswith(b"\n\n") and b"[DONE]" not in part
        out_relayed.append(relayed.feed(part, TEXT_VALUE.findall(part) if whole else None))
    out_plain.append(plain.finish())
    out_relayed.append(relayed.finish())
    assert b"".join(out_relayed) == b"".join(out_plain)
    assert shown(b"".join(out_relayed)) == "A top ****** note，不是敏感的。" * 3


@pytest.mark.parametrize(("sizes", "seed"), CUTS)
def test_the_relay_and_the_screen_together_show_what_the_screen_alone_shows(sizes: str, seed: int) -> None:
    """The stream's body as StreamedAnswer makes it: the relay's output screened with the text fields
    the relay found, including a last read that carries text events, then [DONE]."""
    from appliance.gateway.protocol import Kind, parse
    from appliance.gateway.streaming import StreamedAnswer
    from appliance.quotas.limiter import Reservation
    from appliance.quotas.usage import Guard, RequestMeta

    data = answer(["A top sec", "ret", " note", "，不是", "敏感", "的", "。"] * 3 + ["a sec", "ret"])
    alone = screened(data, sizes, seed)[0]
    call = parse(
        json.dumps({"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode(), Kind.CHAT
    )
    guard = Guard(Reservation("r", ("u:1",), 100, 0.0, degraded=True), RequestMeta(1, 1), prompt_tokens=9, ttl=60)
    streamed = StreamedAnswer(call, None, guard, SseScreen(Matcher(RULES), CONTEXT, "en"))  # type: ignore[arg-type]
    assert streamed.screen is not None
    out = [streamed._screened(part) for part in map(streamed.sse.feed, reads(data, sizes, seed)) if part]
    out.append(streamed.screen.finish())
    assert b"".join(out) == alone
    assert shown(alone) == "A top ****** note，不是敏感的。" * 3 + "a ******"

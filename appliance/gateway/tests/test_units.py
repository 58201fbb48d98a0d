"""Unit tests of the pure parts: body checks, SSE relay accounting, Ollama translation, replica order."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest

from appliance.deployments.routing import Endpoint
from appliance.engines import balancer, client
from appliance.gateway import translate_ollama
from appliance.gateway.errors import GatewayError
from appliance.gateway.protocol import Kind, parse
from appliance.gateway.relay import SseRelay
from appliance.quotas import limiter
from appliance.quotas.limiter import Reservation
from appliance.quotas.usage import Guard, RequestMeta


def guard() -> Guard:
    return Guard(Reservation("r", ("u:1",), 100, 0.0, degraded=True), RequestMeta(1, 1), prompt_tokens=9, ttl=60)


def body(**fields: Any) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": "你好"}], **fields}).encode()


# --- protocol -------------------------------------------------------------------------------------


def test_parse_reads_stream_usage_and_max_tokens() -> None:
    call = parse(body(stream=True, stream_options={"include_usage": True}, max_completion_tokens=12), Kind.CHAT)
    assert (call.stream, call.include_usage, call.max_tokens) == (True, True, 12)
    assert call.prompt_estimate >= 2  # two Chinese characters are at least two tokens


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"[]", None),
        (b'{"messages": []}', "model"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m", "messages": [{"content": "x"}]}', "messages"),
        (body(stream="yes"), "stream"),
        (body(max_tokens=0), "max_tokens"),
        (body(max_tokens=True), "max_tokens"),
    ],
)
def test_parse_refuses_bodies_with_the_param_named(raw: bytes, param: str | None) -> None:
    with pytest.raises(GatewayError) as caught:
        parse(raw, Kind.CHAT)
    assert (caught.value.status, caught.value.param) == (400, param)


def _shape(raw: bytes) -> tuple[int, int, int]:
    call = parse(raw, Kind.COMPLETION)
    return call.prompt_estimate, call.prompts, call.sequences


def test_completion_prompts_of_every_shape_are_bounded_per_prompt() -> None:
    # Token ids are exact; a text is at most one token a byte plus one; each prompt may get BOS and EOS.
    assert _shape(b'{"model": "m", "prompt": [1, 2, 3]}') == (3 + 2, 1, 1)
    assert _shape(b'{"model": "m", "prompt": ["ab", "cd"]}') == (2 * (3 + 2), 2, 2)
    assert _shape(b'{"model": "m", "prompt": [[1, 2], [3]], "n": 2, "best_of": 3}') == (3 + 2 * 2, 2, 6)
    assert _shape('{"model": "m", "prompt": "你好"}'.encode()) == (6 + 1 + 2, 1, 1)
    for bad in (b"5", b"[]", b"[[]]", b'["a", 1]', b"[true]"):
        with pytest.raises(GatewayError):
            parse(b'{"model": "m", "prompt": ' + bad + b"}", Kind.COMPLETION)


def test_chat_bound_counts_every_text_and_the_tools() -> None:
    message = {"role": "user", "content": [{"type": "text", "text": "你好"}], "name": "bo"}
    call = parse(json.dumps({"model": "m", "messages": [message], "n": 4}).encode(), Kind.CHAT)
    assert (call.prompt_estimate, call.messages, call.sequences) == ((6 + 1) + (4 + 1) + (2 + 1), 1, 4)
    tools = [{"type": "function", "function": {"name": "f"}}]
    with_tools = parse(json.dumps({"model": "m", "messages": [message], "tools": tools}).encode(), Kind.CHAT)
    assert with_tools.prompt_estimate > call.prompt_estimate + len("function")
    for name in ("n", "best_of"):
        with pytest.raises(GatewayError) as caught:
            parse(body(**{name: 0}), Kind.CHAT)
        assert caught.value.param == name


# --- SSE relay ------------------------------------------------------------------------------------

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":" tok"}}]}'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}'


def test_events_split_across_reads_are_relayed_whole_and_counted() -> None:
    g = guard()
    relay = SseRelay(g, include_usage=False)
    stream = CHUNK + b"\n\n" + CHUNK + b"\n\n" + b"data: [DONE]\n\n"
    out = b"".join(relay.feed(stream[i : i + 7]) for i in range(0, len(stream), 7)) + relay.flush()
    assert out == stream
    assert g.completion_tokens == 2


@pytest.mark.parametrize("size", [5, 40, 61, 100, 150])
def test_reads_cut_mid_event_pass_their_whole_events_on_as_read(size: int) -> None:
    """A busy console reads where the engine's writes were cut: the complete events of each read go on
    at once, with the text fields the relay found (content safety screens those), the rest waits."""
    g = guard()
    relay = SseRelay(g, include_usage=True)
    stream = (CHUNK + b"\n\n") * 5 + USAGE + b"\n\n" + b"data: [DONE]\n\n"
    out = []
    for i in range(0, len(stream), size):
        part = relay.feed(stream[i : i + size])
        if part and b"usage" not in part and b"[DONE]" not in part:  # as read, its text fields found once
            assert part is relay.passed and relay.values == [b" tok"] * part.count(b"\n\n")
        out.append(part)
    assert b"".join(out) + relay.flush() == stream
    assert (g.prompt_tokens, g.completion_tokens) == (5, 2)  # the engine's usage, not the count
    assert all(part.endswith(b"\n\n") for part in out if part)


def test_a_crlf_stream_cut_between_its_cr_and_lf_still_ends_with_done_and_the_counted_usage() -> None:
    """sse-starlette (llama-cpp-python, which sends no usage) ends lines with CRLF; a read may end on a CR."""
    g = guard()
    relay = SseRelay(g, include_usage=True)
    stream = (CHUNK + b"\r\n\r\n") * 2 + b"data: [DONE]\r\n\r\n"
    out = b"".join(relay.feed(part) for part in (stream[:-1], stream[-1:])) + relay.flush()
    assert out.startswith((CHUNK + b"\n\n") * 2) and out.endswith(b"\n\ndata: [DONE]\n\n")
    assert json.loads(out.split(b"\n\n")[2][6:])["usage"]["completion_tokens"] == 2


def test_a_blank_line_before_done_is_not_passed_on_as_a_read() -> None:
    relay = SseRelay(guard(), include_usage=False)
    assert relay.feed(CHUNK + b"\n\n") is relay.passed
    assert relay.feed(b"\n\ndata: [DONE]\n\n") == b"data: [DONE]\n\n"
    assert relay.passed is None  # taken event by event: the screen finds its text fields itself


def test_crlf_events_are_normalised() -> None:
    g = guard()
    out = SseRelay(g, include_usage=True).feed(CHUNK + b"\r\n\r\n")
    assert out == CHUNK + b"\n\n" and g.completion_tokens == 1


def test_the_usage_chunk_sets_the_counts_and_is_dropped_unless_asked() -> None:
    g = guard()
    assert SseRelay(g, include_usage=False).feed(USAGE + b"\n\n") == b""
    assert (g.prompt_tokens, g.completion_tokens) == (5, 2)
    assert SseRelay(guard(), include_usage=True).feed(USAGE + b"\n\n") == USAGE + b"\n\n"


def test_usage_on_a_chunk_with_choices_is_removed_from_that_chunk() -> None:
    event = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"completion_tokens":4}}'
    g = guard()
    out = SseRelay(g, include_usage=False).feed(event + b"\n\n")
    assert json.loads(out[6:]) == {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    assert (g.prompt_tokens, g.completion_tokens) == (9, 4)  # the estimate stays when the engine gives none


def test_a_client_asking_for_usage_gets_the_counted_one_when_the_engine_sends_none() -> None:
    g = guard()
    relay = SseRelay(g, include_usage=True, model="m")
    out = relay.feed(CHUNK + b"\n\n" + CHUNK + b"\n\ndata: [DONE]\n\n")
    events = [e for e in out.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    usage = json.loads(events[-2][6:])
    assert usage["choices"] == [] and usage["model"] == "m"
    assert usage["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}


def test_a_read_of_whole_text_events_goes_out_as_it_came_and_is_counted() -> None:
    g = guard()
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    read = role + CHUNK + b"\n\n" + CHUNK + b"\n\n"
    assert SseRelay(g, include_usage=False).feed(read) is read  # no copy, no re-encoding
    assert g.completion_tokens == 2 and g.outcome is None


def test_empty_content_and_null_usage_are_not_counted() -> None:
    g = guard()
    SseRelay(g, include_usage=False).feed(b'data: {"choices":[{"delta":{"content":""}}],"usage":null}\n\n')
    assert g.completion_tokens == 0


# --- Ollama ---------------------------------------------------------------------------------------


def test_chat_request_translation() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is it"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}],
        },
    ]
    raw = json.dumps(
        {
            "model": "m",
            "messages": messages,
            "max_tokens": 9,
            "top_p": 0.5,
            "stop": "END",
            "response_format": {"type": "json_object"},
            "tools": [{"type": "function"}],
        }
    ).encode()
    sent = translate_ollama.request_body(parse(raw, Kind.CHAT))
    assert sent["options"] == {"num_predict": 9, "top_p": 0.5, "stop": ["END"]}
    assert sent["messages"][0] == {"role": "user", "content": "what is it", "images": ["QUJD"]}
    assert sent["messages"][1]["tool_calls"] == [{"function": {"name": "f", "arguments": {"x": 1}}}]
    assert sent["format"] == "json" and sent["tools"] == [{"type": "function"}]


def test_remote_image_urls_are_refused() -> None:
    raw = body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}])
    with pytest.raises(GatewayError):
        translate_ollama.request_body(parse(raw, Kind.CHAT))


def test_ndjson_stream_becomes_openai_chunks_with_tool_calls() -> None:
    g = guard()
    call = parse(body(stream=True), Kind.CHAT)
    lines = [
        {"message": {"role": "assistant", "content": "Hi"}, "done": False},
        {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "f", "arguments": {}}}],
            },
            "done": False,
        },
        {
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 11,
            "eval_count": 2,
        },
    ]
    raw = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    translator = translate_ollama.NdjsonToSse(call, g)
    out = translator.feed(raw[:10]) + translator.feed(raw[10:])
    events = [e[6:] for e in out.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"content": "Hi"}
    assert chunks[2]["choices"][0]["delta"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert chunks[3]["choices"][0]["finish_reason"] == "tool_calls"
    assert (g.prompt_tokens, g.completion_tokens) == (11, 2)


def test_an_ollama_error_line_becomes_an_error_event() -> None:
    g = guard()
    out = translate_ollama.NdjsonToSse(parse(body(stream=True), Kind.CHAT), g).feed(b'{"error": "model not found"}\n')
    assert json.loads(out[6:])["error"]["message"] == "model not found"
    assert g.status == "error"


# --- balancer -------------------------------------------------------------------------------------


def endpoint(instance_id: int) -> Endpoint:
    return Endpoint(1, instance_id, "m", "vllm", f"http://127.0.0.1:{instance_id}", 1)


@pytest.mark.asyncio
async def test_fewest_in_flight_across_processes_first_and_ties_rotate(settings: Any) -> None:
    settings.CONSOLE_ID = f"baltest{os.getpid()}"
    a, b, c = endpoint(9001), endpoint(9002), endpoint(9003)
    # Two of these as another web process took them: only the shared count knows.
    client = limiter.async_scripts().client
    await client.zadd(
        f"{settings.CONSOLE_ID}:gw:inflight:9001", {"other-1": time.time() + 60, "other-2": time.time() + 60}
    )
    await client.zadd(f"{settings.CONSOLE_ID}:gw:inflight:9003", {"lapsed": time.time() - 1})  # a dead process's
    lease = await balancer.acquire(b, shared=True)
    try:
        assert [e.instance_id for e in await balancer.ordered([a, b, c])] == [9003, 9002, 9001]
        assert balancer.in_flight(9002) == 1
    finally:
        await balancer.release(lease)
        await client.delete(*(f"{settings.CONSOLE_ID}:gw:inflight:{i}" for i in (9001, 9002, 9003)))
    firsts = {(await balancer.ordered([a, b, c]))[0].instance_id for _ in range(3)}
    assert firsts == {9001, 9002, 9003}
    assert balancer.in_flight(9002) == 0
    await limiter.aclose()


# --- upstream --------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_engine_slower_than_the_read_timeout_is_a_504_and_not_retried(settings: Any) -> None:
    from appliance.gateway import upstream
    from bench.synthetic_upstream import SyntheticUpstream

    settings.APPLIANCE_GATEWAY_READ_TIMEOUT_SECONDS = 0.2
    slow = await SyntheticUpstream(first_delay=2.0).start()
    try:
        with pytest.raises(GatewayError) as caught:
            await upstream.open_first([endpoint(slow.port)], lambda e: ("/v1/completions", b"{}"), "rid-timeout")
        assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")
        assert slow.stats.requests == 1
        assert balancer.in_flight(slow.port) == 0
    finally:
        await client.aclose()
        await slow.stop()


@pytest.mark.asyncio
async def test_a_stream_dropped_before_its_first_chunk_still_frees_the_replica_and_settles() -> None:
    import gc

    from appliance.gateway import upstream
    from appliance.gateway.streaming import StreamedAnswer
    from bench.synthetic_upstream import SyntheticUpstream

    engine = await SyntheticUpstream(token_delay=0.01).start()
    replica = endpoint(engine.port)
    request = json.dumps({"stream": True, "max_tokens": 500}).encode()
    try:
        opened = await upstream.open_first([replica], lambda e: ("/v1/chat/completions", request), "rid-dropped")
        g = guard()
        answer = StreamedAnswer(parse(body(stream=True), Kind.CHAT), opened, g).body()
        assert balancer.in_flight(replica.instance_id) == 1
        del answer  # as Django does when the client leaves before the first write
        gc.collect()
        for _ in range(200):
            if g.outcome is not None and engine.stats.disconnects:
                break
            await asyncio.sleep(0.01)
        assert balancer.in_flight(replica.instance_id) == 0
        assert g.outcome is not None
        assert engine.stats.disconnects == 1
    finally:
        await client.aclose()
        await engine.stop()


# --- ASGI fast path -------------------------------------------------------------------------------


async def _serve_once(path: str, body: bytes, host: str = "127.0.0.1") -> tuple[int, dict[bytes, bytes], bytes]:
    from appliance.gateway.asgi import serve

    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", host.encode()), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80), "scheme": "http", "http_version": "1.1",
    }  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    await serve(scope, receive, send)  # type: ignore[arg-type]
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.asyncio
async def test_fast_path_checks_allowed_hosts_and_body_size(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["console.example"]
    status, headers, payload = await _serve_once("/v1/nothing", b"{}", host="evil.example")
    assert status == 400 and json.loads(payload)["error"]["code"] == "invalid_host"
    assert headers[b"X-Request-ID"]
    settings.APPLIANCE_GATEWAY_MAX_BODY_BYTES = 10
    status, _headers, payload = await _serve_once("/v1/chat/completions", b"x" * 11, host="console.example")
    assert status == 413 and json.loads(payload)["error"]["code"] == "request_too_large"


@pytest.mark.asyncio
async def test_a_screened_stream_writes_no_empty_part() -> None:
    """Every part of the body is a write of the server's; the held text goes out with [DONE], not after it."""
    from appliance.gateway import upstream
    from appliance.gateway.screening import SseScreen
    from appliance.gateway.streaming import StreamedAnswer
    from appliance.safety import recording
    from appliance.safety.choices import Action, Channel
    from appliance.safety.matcher import Matcher, Rule
    from bench.synthetic_upstream import TOKEN, SyntheticUpstream

    engine = await SyntheticUpstream(tokens=20, token_delay=0.001).start()
    request = json.dumps({"stream": True, "max_tokens": 20}).encode()
    screen = SseScreen(
        Matcher([Rule(1, 1, "list", "a word longer than a token", Action.BLOCK)]),
        recording.Context(1, "bob", 1, Channel.GATEWAY, "m1", "rid"),
        "en",
    )
    try:
        opened = await upstream.open_first([endpoint(engine.port)], lambda e: ("/v1/chat/completions", request), "rid")
        answer = StreamedAnswer(parse(body(stream=True), Kind.CHAT), opened, guard(), screen)
        parts = [part async for part in answer.body()]
    finally:
        await client.aclose()
        await engine.stop()
    assert parts and all(parts)
    assert parts[-1].endswith(b"data: [DONE]\n\n")
    assert b"".join(parts).count(json.dumps(TOKEN).encode()) == 20

"""Parsing engines' server-sent events: vLLM, llama-server, llama-cpp-python (sse-starlette) and errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from appliance.chat.upstream import Chunk, UpstreamError, parse_events

pytestmark = pytest.mark.asyncio


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


def _data(delta: dict[str, object], finish: str | None = None, **extra: object) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})


async def _collect(*lines: str) -> list[Chunk]:
    return [chunk async for chunk in parse_events(_lines(*lines))]


async def test_openai_stream_with_usage_and_done() -> None:
    usage = "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    chunks = await _collect(
        _data({"role": "assistant"}), "", _data({"content": "Hi"}), "", _data({}, "stop"), "", usage, "",
        "data: [DONE]", "",
    )  # fmt: skip
    assert [c.content for c in chunks] == ["", "Hi", "", ""]
    assert chunks[2].finish_reason == "stop" and chunks[3].usage == (5, 2)


async def test_sse_starlette_pings_and_comments_are_ignored() -> None:
    # httpx's aiter_lines already strips "\r\n"; what remains are comment lines between events.
    chunks = await _collect(": ping - 2025-01-01 00:00:00.000000", "", _data({"content": "a"}), "", _data({}, "stop"))
    assert [c.content for c in chunks] == ["a", ""]


async def test_reasoning_fields_of_vllm_and_newer_engines() -> None:
    chunks = await _collect(
        _data({"reasoning_content": "r1"}), "", _data({"reasoning": "r2"}), "", _data({"content": "c"}, "stop"), ""
    )
    assert [(c.reasoning, c.content) for c in chunks] == [("r1", ""), ("r2", ""), ("", "c")]


async def test_a_stream_cut_before_the_end_raises() -> None:
    with pytest.raises(UpstreamError) as caught:
        await _collect(_data({"content": "a"}), "")
    assert caught.value.code == "engine_disconnected"


async def test_an_error_event_mid_stream_raises_with_the_engines_message() -> None:
    with pytest.raises(UpstreamError) as caught:
        await _collect(_data({"content": "a"}), "", 'data: {"error": {"message": "out of memory"}}', "")
    assert (caught.value.code, caught.value.detail) == ("engine_error", "out of memory")

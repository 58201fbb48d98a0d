"""Parsing engines' server-sent events (the gateway's and the chat's one parser): vLLM, llama-server,
llama-cpp-python (sse-starlette) and errors, whatever the reads' boundaries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from appliance.engines.client import Disconnected, EngineFailure
from appliance.engines.sse import Chunk, ChunkReader, Events

pytestmark = pytest.mark.asyncio


async def _reads(*lines: str, size: int) -> AsyncIterator[bytes]:
    raw = "".join(f"{line}\n" for line in lines).encode()
    for at in range(0, len(raw), size):
        yield raw[at : at + size]


def _data(delta: dict[str, object], finish: str | None = None, **extra: object) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})


def _reader(reads: AsyncIterator[bytes]) -> ChunkReader:
    async def read_some() -> bytes:
        return await anext(reads, b"")

    return ChunkReader(read_some)


async def chunk_reads(reads: AsyncIterator[bytes]) -> list[list[Chunk]]:
    reader, found = _reader(reads), []
    while (chunks := await reader.read()) is not None:
        found.append(chunks)
    return found


async def chunks(reads: AsyncIterator[bytes]) -> list[Chunk]:
    return [chunk for found in await chunk_reads(reads) for chunk in found]


async def _collect(*lines: str, size: int = 7) -> list[Chunk]:
    """The chunks of ``lines``, sent in reads of ``size`` bytes (events split anywhere) and as one read."""
    found = await chunks(_reads(*lines, size=size))
    assert found == await chunks(_reads(*lines, size=1 << 20))
    return found


async def test_openai_stream_with_usage_and_done() -> None:
    usage = "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    found = await _collect(
        _data({"role": "assistant"}), "", _data({"content": "Hi"}), "", _data({}, "stop"), "", usage, "",
        "data: [DONE]", "",
    )  # fmt: skip
    assert [c.content for c in found] == ["", "Hi", "", ""]
    assert found[2].finish_reason == "stop" and found[3].usage == (5, 2)


async def test_sse_starlette_pings_and_comments_are_ignored() -> None:
    lines = [": ping - 2025-01-01 00:00:00.000000", "", _data({"content": "a"}), "", _data({}, "stop"), ""]
    found = await _collect(*(line + "\r" for line in lines))  # sse-starlette's "\r\n"
    assert [c.content for c in found] == ["a", ""]


async def test_reasoning_fields_of_vllm_and_newer_engines() -> None:
    found = await _collect(
        _data({"reasoning_content": "r1"}), "", _data({"reasoning": "r2"}), "", _data({"content": "c"}, "stop"), ""
    )
    assert [(c.reasoning, c.content) for c in found] == [("r1", ""), ("r2", ""), ("", "c")]


async def test_a_stream_cut_before_the_end_raises() -> None:
    with pytest.raises(Disconnected) as caught:
        await _collect(_data({"content": "a"}), "")
    assert caught.value.code == "engine_disconnected"


async def test_an_error_event_mid_stream_raises_with_the_engines_message() -> None:
    with pytest.raises(EngineFailure) as caught:
        await _collect(_data({"content": "a"}), "", 'data: {"error": {"message": "out of memory"}}', "")
    assert (caught.value.code, caught.value.detail) == ("engine_error", "out of memory")


async def test_events_keep_an_incomplete_tail_for_the_next_read() -> None:
    events = Events()
    assert events.feed(b"data: 1\n\nda") == [b"data: 1"]
    assert events.feed(b"ta: 2\r\n\r\n: ping\n\ndata: 3") == [b"data: 2", b": ping"]
    assert events.flush() == b"data: 3"


async def test_the_chunks_of_one_read_come_together() -> None:
    async def reads() -> AsyncIterator[bytes]:
        yield (f"{_data({'content': 'a'})}\n\n{_data({'content': 'b'})}\n\n{_data({'content': 'c'})[:9]}").encode()
        yield (f"{_data({'content': 'c'})[9:]}\n\n{_data({}, 'stop')}\n\ndata: [DONE]\n\n").encode()

    found = [[c.content for c in group] for group in await chunk_reads(reads())]
    assert found == [["a", "b"], ["c", ""]]  # an event cut between reads comes with the read that ends it


async def test_the_last_chunk_of_a_cut_stream_comes_before_the_cut_is_reported() -> None:
    reader = _reader(_reads(_data({"content": "a"}), "", _data({"content": "b"}), size=1 << 20))
    assert [c.content for c in await reader.read() or []] == ["a"]
    assert [c.content for c in await reader.read() or []] == ["b"]  # the last event, without its blank line
    with pytest.raises(Disconnected):
        await reader.read()

"""A chat answer's stream from an engine, through the engine client the gateway uses too.

``appliance.engines.client`` holds the pooled connections, picks the least busy replica across the
processes, retries another while nothing has come back and forwards the request id;
``appliance.engines.sse`` parses the stream. This module only turns their failures into the chat's
error codes. Leaving the ``open_stream`` block closes the HTTP connection (when the answer has not
ended), which is how an engine learns that nobody listens and stops generating.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from django.conf import settings

from appliance.chat.choices import ErrorCode
from appliance.deployments.routing import Endpoint
from appliance.engines import client, sse
from appliance.engines.sse import Chunk

__all__ = ["Chunk", "Stream", "UpstreamError", "open_stream"]
PATH = "/v1/chat/completions"


class UpstreamError(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail[:500]


def _timeout() -> aiohttp.ClientTimeout:
    # ``read`` bounds the silence between two chunks (and the wait for the first one, prefill included).
    connect = settings.CHAT_UPSTREAM_CONNECT_TIMEOUT_SECONDS
    return client.timeout(connect, settings.CHAT_UPSTREAM_READ_TIMEOUT_SECONDS, pool=connect)


def _failure(exc: client.EngineFailure) -> UpstreamError:
    return UpstreamError(ErrorCode(exc.code), exc.detail)


async def _open(endpoints: Sequence[Endpoint], payload: dict[str, Any], request_id: str) -> client.Opened:
    content = json.dumps(sse.ask_usage(payload), ensure_ascii=False).encode()
    try:
        opened = await client.open_first(endpoints, lambda _e: (PATH, content), request_id, _timeout())
    except client.EngineFailure as exc:
        raise _failure(exc) from exc
    if opened.status != 200:
        try:
            body = await client.error_body(opened)
        except client.EngineFailure:
            body = b""
        finally:
            await client.close(opened)
        detail = client.error_message(body) or body[:500].decode(errors="replace")
        raise UpstreamError(ErrorCode.ENGINE_ERROR, f"HTTP {opened.status}: {detail}")
    return opened


class Stream:
    """The answer's chunks, those of one read of the engine's stream together: ``await read()`` until None.
    A read may be cancelled (``generation.Alarm``) without losing anything (``sse.ChunkReader``)."""

    __slots__ = ("_reader",)

    def __init__(self, opened: client.Opened) -> None:
        self._reader = sse.ChunkReader(functools.partial(client.read_some, opened))

    async def read(self) -> list[Chunk] | None:
        try:
            return await self._reader.read()
        except client.EngineFailure as exc:
            raise _failure(exc) from exc


@asynccontextmanager
async def open_stream(
    endpoints: Sequence[Endpoint], payload: dict[str, Any], request_id: str = ""
) -> AsyncIterator[Stream]:
    """The answer's stream from the least busy of ``endpoints`` (the replicas of one model)."""
    opened = await _open(endpoints, payload, request_id or "chat")
    try:
        yield Stream(opened)
    finally:
        await client.close(opened)

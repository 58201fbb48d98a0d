"""Streaming from an engine's OpenAI-compatible ``/v1/chat/completions`` with httpx.

Works with vLLM, Ollama's ``/v1``, llama-server and llama-cpp-python's server (sse-starlette:
``\\r\\n`` line ends and ``: ping`` comment lines). Leaving the ``open_stream`` block closes the HTTP
connection, which is how an engine learns that nobody listens and stops generating.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from appliance.chat.choices import ErrorCode

logger = logging.getLogger(__name__)

ERROR_BODY_LIMIT = 2000


@dataclass(frozen=True)
class Chunk:
    """One parsed event of the stream."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None  # (prompt tokens, completion tokens)


class UpstreamError(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail[:500]


def _timeout() -> httpx.Timeout:
    # ``read`` bounds the silence between two chunks (and the wait for the first one, prefill included).
    return httpx.Timeout(
        connect=settings.CHAT_UPSTREAM_CONNECT_TIMEOUT_SECONDS,
        read=settings.CHAT_UPSTREAM_READ_TIMEOUT_SECONDS,
        write=settings.CHAT_UPSTREAM_CONNECT_TIMEOUT_SECONDS,
        pool=settings.CHAT_UPSTREAM_CONNECT_TIMEOUT_SECONDS,
    )


def _error_detail(body: bytes) -> str:
    text = body[:ERROR_BODY_LIMIT].decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)
    return str(error)


# An engine to try: its base URL and its key (appliance/deployments/engine_keys.py), sent as Bearer.
Upstream = tuple[str, str]


async def _connect(
    client: httpx.AsyncClient, upstreams: Sequence[Upstream], payload: dict[str, Any], request_id: str
) -> httpx.Response:
    """The first replica that takes the connection; only connection failures move on to the next one."""
    last: Exception | None = None
    for base, key in upstreams:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if request_id:
            headers["X-Request-ID"] = request_id
        request = client.build_request("POST", f"{base}/v1/chat/completions", json=payload, headers=headers)
        try:
            response = await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            logger.warning("chat: engine at %s unreachable: %s", base, exc)
            last = exc
            continue
        except httpx.TimeoutException as exc:
            raise UpstreamError(ErrorCode.ENGINE_TIMEOUT, str(exc)) from exc
        if response.status_code != httpx.codes.OK:
            body = await response.aread()
            await response.aclose()
            raise UpstreamError(ErrorCode.ENGINE_ERROR, f"HTTP {response.status_code}: {_error_detail(body)}")
        return response
    raise UpstreamError(ErrorCode.ENGINE_UNAVAILABLE, str(last or "no running instance"))


@asynccontextmanager
async def open_stream(
    upstreams: Sequence[Upstream], payload: dict[str, Any], request_id: str = ""
) -> AsyncIterator[AsyncIterator[Chunk]]:
    """The engine's event stream; ``request_id`` (the chat job's) goes to the engine as X-Request-ID."""
    async with httpx.AsyncClient(timeout=_timeout()) as client:
        response = await _connect(client, upstreams, payload, request_id)
        events = parse_events(response.aiter_lines())
        try:
            yield events
        finally:
            await events.aclose()
            await response.aclose()


def _parse_chunk(data: str) -> Chunk | None:
    try:
        obj = json.loads(data)
    except ValueError:
        logger.warning("chat: unparsable stream event %r", data[:200])
        return None
    if not isinstance(obj, dict):
        return None
    if obj.get("error"):
        raise UpstreamError(ErrorCode.ENGINE_ERROR, _error_detail(json.dumps(obj).encode()))
    usage = obj.get("usage")
    counts = None
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        counts = (int(usage.get("prompt_tokens") or 0), int(usage["completion_tokens"]))
    choices = obj.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    return Chunk(
        content=delta.get("content") or "",
        reasoning=reasoning if isinstance(reasoning, str) else "",
        finish_reason=choice.get("finish_reason"),
        usage=counts,
    )


async def parse_events(lines: AsyncIterator[str]) -> AsyncGenerator[Chunk, None]:
    """Server-sent events to chunks; ends at ``[DONE]``. A stream cut before the answer ended raises."""
    data: list[str] = []
    finished = False
    try:
        async for line in lines:
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line and data:
                payload, data = "\n".join(data), []
                if payload.strip() == "[DONE]":
                    return
                chunk = _parse_chunk(payload)
                if chunk is not None:
                    finished = finished or chunk.finish_reason is not None
                    yield chunk
            # anything else: comments (": ping"), other fields, stray blank lines
    except httpx.TimeoutException as exc:
        raise UpstreamError(ErrorCode.ENGINE_TIMEOUT, str(exc) or "no data in time") from exc
    except httpx.TransportError as exc:
        raise UpstreamError(ErrorCode.ENGINE_DISCONNECTED, str(exc) or type(exc).__name__) from exc
    last = "\n".join(data)
    if last.strip() == "[DONE]":
        return
    chunk = _parse_chunk(last) if last else None  # a last event without its blank line
    if chunk is not None:
        finished = finished or chunk.finish_reason is not None
        yield chunk
    if not finished:
        raise UpstreamError(ErrorCode.ENGINE_DISCONNECTED, "the stream ended before the answer did")

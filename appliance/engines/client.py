"""HTTP to the engines, for the gateway and the chat alike: pooled clients, replica choice, retry.

The clients (per event loop: asyncio clients belong to the loop that made them) keep HTTP/1.1
connections to the engines alive between requests, so a request costs no TCP handshake, and no
TLS context is built per request (the chat's former client-per-answer loaded the CA bundle each
time: 27 % of a busy process's CPU, docs/performance.md). There are a few of them rather than one
because httpcore (1.0.9) re-examines its whole pool on every request and response, at a cost that
grows with the square of the pool's connections (``AsyncConnectionPool._assign_requests_to_connections``):
with 256 streams in one pool that scan took over half of the gateway's CPU. Requests take the
clients in turn, each holding a share of ``APPLIANCE_GATEWAY_MAX_CONNECTIONS``, so each scan stays small.

A request goes to the replica with the fewest requests in flight across the processes (``balancer``)
and is retried on another only while nothing has come back yet (connection refused, reset, or
closed before the response line): the engine has not answered, so nothing can have reached the
client twice. A slow engine (read timeout) is not retried: it may still be working. The request id
travels as ``X-Request-ID``, the engine's key as a Bearer token.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from appliance.deployments.routing import Endpoint
from appliance.engines import balancer

logger = logging.getLogger(__name__)

# Failures that happen before the engine sent anything back, so the request can go elsewhere.
RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
POOLS = 8
ERROR_BODY_LIMIT = 64 * 1024


class EngineFailure(Exception):
    """An engine request that failed; ``code`` names how (the chat stores it as the answer's error code)."""

    code = "engine_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail[:2000]


class Unreachable(EngineFailure):
    """No replica took the request (every one refused or dropped it before answering)."""

    code = "engine_unavailable"


class TimedOut(EngineFailure):
    """The engine did not answer, or went silent mid-answer, for longer than the read timeout."""

    code = "engine_timeout"


class Disconnected(EngineFailure):
    """The engine broke off an answer it had started."""

    code = "engine_disconnected"


class _Pools:
    def __init__(self) -> None:
        self.timeout = gateway_timeout()
        self.extensions = {"timeout": self.timeout.as_dict()}
        size = -(-settings.APPLIANCE_GATEWAY_MAX_CONNECTIONS // POOLS)  # rounded up
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=60)
        self.clients = [
            httpx.AsyncClient(timeout=self.timeout, limits=limits, trust_env=False, follow_redirects=False)
            for _ in range(POOLS)
        ]
        self.turn = itertools.count()

    def next(self) -> httpx.AsyncClient:
        return self.clients[next(self.turn) % POOLS]


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pools] = weakref.WeakKeyDictionary()


def gateway_timeout() -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings.APPLIANCE_GATEWAY_CONNECT_TIMEOUT_SECONDS,
        # Between two reads: a long prompt's prefill comes before the first byte.
        read=settings.APPLIANCE_GATEWAY_READ_TIMEOUT_SECONDS,
        write=30.0,
        pool=10.0,
    )


def pools() -> _Pools:
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None:
        found = _pools[loop] = _Pools()
    return found


@functools.lru_cache(maxsize=1024)
def _url(base_url: str, path: str) -> httpx.URL:
    return httpx.URL(base_url + path)


def _request(
    endpoint: Endpoint, path: str, content: bytes, headers: dict[str, str], timeout: httpx.Timeout | None
) -> httpx.Request:
    """A request built without ``client.build_request``, whose URL parsing and header merging cost
    several times the request itself; the timeouts travel in the extension httpcore reads."""
    extensions = pools().extensions if timeout is None else {"timeout": timeout.as_dict()}
    return httpx.Request("POST", _url(endpoint.base_url, path), content=content, headers=headers, extensions=extensions)


async def aclose() -> None:
    """Close this loop's clients (ASGI shutdown, end of a test's event loop)."""
    found = _pools.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await asyncio.gather(*(c.aclose() for c in found.clients))


@dataclass
class Opened:
    endpoint: Endpoint
    response: httpx.Response
    lease: balancer.Lease


# Builds the (path, body) to send to one replica: replicas of one name may run different engines.
Builder = Callable[[Endpoint], tuple[str, bytes]]


async def open_first(
    endpoints: Sequence[Endpoint], build: Builder, request_id: str, timeout: httpx.Timeout | None = None
) -> Opened:
    """Send to the least busy replica and return once its status line and headers arrived.

    Raises ``Unreachable`` when no replica answered, ``TimedOut`` when one did not in time. The caller
    owns the result and must ``close`` it. ``timeout``: the gateway's (``gateway_timeout``) unless given.
    """
    if not endpoints:
        raise Unreachable("no running instance")
    order = await balancer.ordered(endpoints)
    # One replica: a second try covers a kept-alive connection the engine had closed meanwhile.
    attempts = order if len(order) > 1 else order * 2
    failures: list[str] = []
    headers = {**_HEADERS, "X-Request-ID": request_id}
    for endpoint in attempts:
        path, content = build(endpoint)
        auth = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        request = _request(endpoint, path, content, {**headers, **auth}, timeout)
        lease = await balancer.acquire(endpoint, shared=len(endpoints) > 1)
        try:
            response = await pools().next().send(request, stream=True)
        except RETRYABLE as exc:
            await balancer.release(lease)
            failures.append(f"{endpoint.base_url}: {type(exc).__name__}")
            logger.warning("engine %s failed before answering (%s); trying the next replica", endpoint.base_url, exc)
            continue
        except httpx.TimeoutException as exc:
            await balancer.release(lease)
            raise TimedOut(f"The engine did not answer in time ({type(exc).__name__}).") from exc
        except BaseException:
            await balancer.release(lease)
            raise
        return Opened(endpoint, response, lease)
    raise Unreachable("; ".join(failures))


async def close(opened: Opened) -> None:
    """Close the response (before its end this drops the connection: the engine sees the client go)
    and free the replica's slot."""
    try:
        await opened.response.aclose()
    finally:
        await balancer.release(opened.lease)


async def error_body(response: httpx.Response) -> bytes:
    """A non-2xx answer's body, bounded (an engine's error page is small; a broken one need not be)."""
    parts, size = [], 0
    async for part in response.aiter_raw():
        parts.append(part)
        size += len(part)
        if size >= ERROR_BODY_LIMIT:
            break
    return b"".join(parts)[:ERROR_BODY_LIMIT]


def error_message(raw: bytes) -> str:
    """The human message of an engine's error body: vLLM, llama.cpp and Ollama each shape it differently."""
    try:
        data: Any = json.loads(raw)
    except ValueError:
        return raw[:500].decode(errors="replace").strip()
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or "")[:2000]
        return str(error)[:2000]
    return ""

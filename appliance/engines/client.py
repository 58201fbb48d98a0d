"""HTTP to the engines, for the gateway and the chat alike: pooled connections, replica choice, retry.

The client is aiohttp's (docs/adr/0006-aiohttp-engine-client.md): one session per event loop
(asyncio clients belong to the loop that made them) keeps HTTP/1.1 connections to the engines alive
between requests, so a request costs no TCP handshake, and no TLS context is built per request (the
chat's former client-per-answer loaded the CA bundle each time: 27 % of a busy process's CPU,
docs/performance.md). Its HTTP parser is C (llhttp), and a read of a streamed answer returns all the
engine has sent since the last one, however many SSE events that is (``reads``): per request it costs
about a third of the CPU httpx did, and a stream a few reads where httpx made one per event
(httpcore also re-examined its whole pool on every request, at a cost that grew with the square of
the pool's connections; the gateway had to spread its connections over several clients).

A request goes to the replica with the fewest requests in flight across the processes (``balancer``)
and is retried on another only while nothing has come back yet (connection refused, reset, or
closed before the response line): the engine has not answered, so nothing can have reached the
client twice. A slow engine (read timeout) is not retried: it may still be working. The request id
travels as ``X-Request-ID``, the engine's key as a Bearer token. Callers see the engine's failures as
``EngineFailure`` (``Unreachable``, ``TimedOut``, ``Disconnected``), never aiohttp's own exceptions.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl
from django.conf import settings

from appliance.deployments.routing import Endpoint
from appliance.engines import balancer

logger = logging.getLogger(__name__)

# Failures that happen before the engine sent anything back, so the request can go elsewhere:
# refused or unresolvable (ClientConnectorError, a ClientOSError), reset (ClientOSError), a kept-alive
# connection the engine had closed (ServerDisconnectedError), no connection in time
# (ConnectionTimeoutError), a response line that is not HTTP (ClientResponseError).
RETRYABLE = (
    aiohttp.ClientOSError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ClientResponseError,
)
_HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
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


class _Session:
    def __init__(self) -> None:
        self.timeout = gateway_timeout()
        self.connector = aiohttp.TCPConnector(
            limit=settings.APPLIANCE_GATEWAY_MAX_CONNECTIONS, limit_per_host=0, keepalive_timeout=60
        )
        self.session = aiohttp.ClientSession(
            connector=self.connector,
            timeout=self.timeout,
            auto_decompress=False,  # relayed byte for byte (and asked for uncompressed: _HEADERS)
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    def forget(self) -> None:
        """Its loop is closed (a test's) or the process is ending: the connections went with the loop.
        Marked closed, so that neither the session nor its connector reports itself unclosed when
        collected; aiohttp's public close is a coroutine, and there is no loop left to run it."""
        self.session.detach()
        self.connector._close()


# A plain dictionary, not a weak one: a session refers to its loop, so a weak key would never go.
_sessions: dict[asyncio.AbstractEventLoop, _Session] = {}


def _forget_all() -> None:
    while _sessions:
        _sessions.popitem()[1].forget()


atexit.register(_forget_all)


def timeout(connect: float, read: float, pool: float = 10.0) -> aiohttp.ClientTimeout:
    """``connect``: to open a TCP connection; ``read``: the longest silence between two reads (and
    before the response line: a long prompt's prefill comes first); ``pool``: the longest wait for a
    free connection when all ``APPLIANCE_GATEWAY_MAX_CONNECTIONS`` are busy (aiohttp counts it in ``connect``)."""
    return aiohttp.ClientTimeout(total=None, connect=pool + connect, sock_connect=connect, sock_read=read)


def gateway_timeout() -> aiohttp.ClientTimeout:
    return timeout(settings.APPLIANCE_GATEWAY_CONNECT_TIMEOUT_SECONDS, settings.APPLIANCE_GATEWAY_READ_TIMEOUT_SECONDS)


def _session() -> _Session:
    loop = asyncio.get_running_loop()
    found = _sessions.get(loop)
    if found is None:
        for gone in [other for other in _sessions if other.is_closed()]:
            _sessions.pop(gone).forget()
        found = _sessions[loop] = _Session()
    return found


@functools.lru_cache(maxsize=1024)
def _url(base_url: str, path: str) -> yarl.URL:
    return yarl.URL(base_url + path)


async def aclose() -> None:
    """Close this loop's session (ASGI shutdown, end of a test's event loop)."""
    found = _sessions.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.session.close()


@dataclass
class Opened:
    endpoint: Endpoint
    response: aiohttp.ClientResponse
    lease: balancer.Lease

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def ok(self) -> bool:
        return 200 <= self.response.status < 300


# Builds the (path, body) to send to one replica: replicas of one name may run different engines.
Builder = Callable[[Endpoint], tuple[str, bytes]]


async def open_first(
    endpoints: Sequence[Endpoint], build: Builder, request_id: str, timeout: aiohttp.ClientTimeout | None = None
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
    session = _session()
    for endpoint in attempts:
        path, content = build(endpoint)
        auth = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        lease = await balancer.acquire(endpoint, shared=len(endpoints) > 1)
        try:
            response = await session.session.post(
                _url(endpoint.base_url, path), data=content, headers={**headers, **auth},
                timeout=timeout or session.timeout,
            )  # fmt: skip
        except RETRYABLE as exc:
            await balancer.release(lease)
            failures.append(f"{endpoint.base_url}: {type(exc).__name__}")
            logger.warning("engine %s failed before answering (%s); trying the next replica", endpoint.base_url, exc)
            continue
        except TimeoutError as exc:
            await balancer.release(lease)
            raise TimedOut(f"The engine did not answer in time ({type(exc).__name__}).") from exc
        except BaseException:
            await balancer.release(lease)
            raise
        return Opened(endpoint, response, lease)
    raise Unreachable("; ".join(failures))


def _read_failure(exc: TimeoutError | aiohttp.ClientError) -> EngineFailure:
    """A failed read of an answer: a silence longer than the read timeout, or the answer broken off."""
    if isinstance(exc, TimeoutError):
        return TimedOut(f"no data from the engine in time ({type(exc).__name__})")
    return Disconnected(str(exc) or type(exc).__name__)


async def reads(opened: Opened) -> AsyncGenerator[bytes, None]:
    """The answer's body as it arrives: each item all the engine sent since the previous one (one SSE
    event when the reader keeps up, many when they piled up). A silence longer than the read timeout
    raises ``TimedOut``; an answer broken off (connection reset or closed mid-body) ``Disconnected``."""
    try:
        async for data in opened.response.content.iter_any():
            yield data
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _read_failure(exc) from exc


async def read_some(opened: Opened) -> bytes:
    """What the engine sent since the last read, once there is some (b"" at the end of the body); failures as
    ``reads``. Cancelling it loses nothing: what arrives meanwhile waits in the response's buffer."""
    try:
        return await opened.response.content.readany()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _read_failure(exc) from exc


async def read_all(opened: Opened) -> bytes:
    """A whole (non-streamed) answer; failures as ``reads``."""
    try:
        return await opened.response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _read_failure(exc) from exc


async def close(opened: Opened) -> None:
    """Close the response (before its end this drops the connection: the engine sees the client go; after
    it the connection is already back in the pool) and free the replica's slot."""
    try:
        opened.response.close()
    finally:
        await balancer.release(opened.lease)


async def error_body(opened: Opened) -> bytes:
    """A non-2xx answer's body, bounded (an engine's error page is small; a broken one need not be)."""
    parts, size = [], 0
    async for part in reads(opened):
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

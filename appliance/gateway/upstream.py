"""HTTP to the engines: pooled ``httpx.AsyncClient``s shared by the process, replica choice, retry.

The clients (per event loop: asyncio clients belong to the loop that made them) keep HTTP/1.1
connections to the engines alive between requests, so a request costs no TCP handshake. There are
a few of them rather than one because httpcore (1.0.9) re-examines its whole pool on every request
and response, at a cost that grows with the square of the pool's connections
(``AsyncConnectionPool._assign_requests_to_connections``): with 256 streams in one pool that scan
took over half of the gateway's CPU. Requests take the clients in turn, each holding a share of
``APPLIANCE_GATEWAY_MAX_CONNECTIONS``, so each scan stays small.

A request is retried on another replica only while nothing has come back yet (connection refused,
reset, or closed before the response line): the engine has not answered, so nothing can have
reached the client twice. A slow engine (read timeout) is not retried: it may still be working.
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
from appliance.gateway import balancer
from appliance.gateway.errors import UNAVAILABLE, UPSTREAM, GatewayError, no_upstream

logger = logging.getLogger(__name__)

# Failures that happen before the engine sent anything back, so the request can go elsewhere.
RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
_KEPT_STATUSES = frozenset({400, 413, 422})  # the client's fault, said by the engine: passed on as is
POOLS = 8


class _Pools:
    def __init__(self) -> None:
        self.timeout = _timeout()
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


def _timeout() -> httpx.Timeout:
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


def _request(endpoint: Endpoint, path: str, content: bytes, headers: dict[str, str]) -> httpx.Request:
    """A request built without ``client.build_request``, whose URL parsing and header merging cost
    several times the request itself; the timeouts travel in the extension httpcore reads."""
    extensions = pools().extensions
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


async def open_first(endpoints: Sequence[Endpoint], build: Builder, request_id: str) -> Opened:
    """Send to the least busy replica and return once its status line and headers arrived.

    The caller owns the result: it must ``balancer.release`` its lease and close the response.
    """
    order = await balancer.ordered(endpoints)
    # One replica: a second try covers a kept-alive connection the engine had closed meanwhile.
    attempts = order if len(order) > 1 else order * 2
    failures: list[str] = []
    headers = {**_HEADERS, "X-Request-ID": request_id}
    for endpoint in attempts:
        path, content = build(endpoint)
        auth = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        request = _request(endpoint, path, content, {**headers, **auth})
        lease = await balancer.acquire(endpoint, shared=len(endpoints) > 1)
        try:
            response = await pools().next().send(request, stream=True)
        except RETRYABLE as exc:
            await balancer.release(lease)
            failures.append(f"{endpoint.base_url}: {type(exc).__name__}")
            logger.warning("upstream %s failed before answering (%s); trying the next replica", endpoint.base_url, exc)
            continue
        except httpx.TimeoutException as exc:
            await balancer.release(lease)
            raise GatewayError(
                504,
                f"The engine did not answer in time ({type(exc).__name__}).",
                type=UPSTREAM,
                code="upstream_timeout",
            ) from exc
        except BaseException:
            await balancer.release(lease)
            raise
        return Opened(endpoint, response, lease)
    raise no_upstream(endpoints[0].served_model_name, "; ".join(failures))


async def error_from(response: httpx.Response) -> GatewayError:
    """An engine's non-2xx answer in OpenAI's shape (vLLM, llama.cpp and Ollama each word it differently)."""
    raw = await response.aread()
    message = _message(raw) or f"The engine answered HTTP {response.status_code}."
    status = response.status_code if response.status_code in _KEPT_STATUSES else 502
    if response.status_code == 429:
        return GatewayError(429, message, type="rate_limit_error", code="engine_busy", headers={"Retry-After": "1"})
    if status == 502:
        code, kind = f"upstream_{response.status_code}", UPSTREAM if response.status_code != 503 else UNAVAILABLE
        return GatewayError(502, message, type=kind, code=code)
    return GatewayError(status, message, code="upstream_rejected")


def _message(raw: bytes) -> str:
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

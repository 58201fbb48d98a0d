"""Quota enforcement in Redis, shared by every web process.

A request reserves its worst case (prompt tokens + max_tokens) against each scope it belongs to
(the user, the user's department and that department's ancestors), takes a concurrency slot and
a requests-per-minute count, all in one Lua script; it settles to its real usage when it ends.
A reservation that is never settled expires at its TTL and is dropped by the next script that
touches the scope. Redis unreachable: ``QuotaUnavailable`` (HTTP 503) unless
``APPLIANCE_QUOTA_FAIL_OPEN`` is set; either way the failure is logged and counted in-process.

This module stays free of the ORM, so the gateway's hot path does no database work here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections import Counter
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.utils.translation import gettext as _
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from appliance.quotas import lua
from appliance.quotas.choices import (
    MAX_RESERVATION_TTL_SECONDS,
    REJECTION_CODES,
    SETTLED_MARKER_GRACE_SECONDS,
    LimitName,
)
from appliance.quotas.exceptions import QuotaExceeded, QuotaUnavailable
from appliance.quotas.windows import (
    DAY_KEY_TTL_SECONDS,
    MONTH_KEY_TTL_SECONDS,
    Windows,
    scope_keys,
    settled_key,
    usage_keys,
    windows_at,
)

logger = logging.getLogger(__name__)

UNLIMITED = -1
POOL_SIZE = 64  # Redis connections per process (per event loop for asyncio)
_RESERVE_KEYS = ("res", "amt", "held", "day", "month", "rpm")
_SETTLE_KEYS = ("res", "amt", "held", "day", "month")


@dataclass(frozen=True)
class QuotaScope:
    """One budget a request counts against: ``d:<department id>`` or ``u:<user id>``; None = unlimited."""

    key: str
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    requests_per_minute: int | None = None
    concurrent_requests: int | None = None
    max_tokens_per_request: int | None = None
    label: str = ""


@dataclass(frozen=True)
class Reservation:
    request_id: str
    scope_keys: tuple[str, ...]
    reserved_tokens: int
    expires_at: float  # epoch seconds
    degraded: bool = False  # admitted without Redis (fail-open); nothing is held for it


@dataclass(frozen=True)
class ScopeUsage:
    scope: QuotaScope
    tokens_today: int
    tokens_this_month: int
    tokens_in_flight: int
    requests_in_flight: int
    requests_this_minute: int


class SettleOutcome(StrEnum):
    SETTLED = "settled"
    ALREADY_SETTLED = "already_settled"
    UNAVAILABLE = "unavailable"  # Redis unreachable: counters not charged, record not queued


# --- failure accounting (independent of Redis, so it works while Redis is down) ----------------

_failures: Counter[str] = Counter()
_failures_lock = threading.Lock()


def redis_failure_counts() -> dict[str, int]:
    """Redis failures seen by this process, by operation (``reserve.fail_closed``, ``settle`` …)."""
    with _failures_lock:
        return dict(_failures)


def note_redis_failure(operation: str, exc: BaseException) -> None:
    with _failures_lock:
        _failures[operation] += 1
    logger.error("quota redis unreachable during %s: %s", operation, exc)


# --- clients and scripts --------------------------------------------------------------------


class _Scripts:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.reserve = client.register_script(lua.RESERVE)
        self.settle = client.register_script(lua.SETTLE)
        self.extend = client.register_script(lua.EXTEND)
        self.peek = client.register_script(lua.PEEK)
        self.move_batch = client.register_script(lua.MOVE_BATCH)
        self.return_batch = client.register_script(lua.RETURN_BATCH)


_sync_scripts: dict[str, _Scripts] = {}
_async_scripts: weakref.WeakKeyDictionary[AbstractEventLoop, tuple[str, _Scripts]] = weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()


def _pool_options(retry: Any, *, in_loop: bool = False) -> dict[str, Any]:
    timeout = settings.APPLIANCE_QUOTA_REDIS_TIMEOUT_MS / 1000
    # In an event loop a reply is read only when the loop comes round to it: a loop that runs late under
    # load must cost latency, not a burst of "quota unavailable". A Redis that is down still fails at
    # once (connection refused).
    waiting = max(timeout, settings.APPLIANCE_QUOTA_REDIS_LOOP_TIMEOUT_MS / 1000) if in_loop else timeout
    return {
        # A burst of requests waits briefly for one of a few connections instead of opening
        # hundreds at once; each script holds a connection for well under a millisecond.
        "max_connections": POOL_SIZE,
        "timeout": waiting,
        "socket_timeout": waiting,
        "socket_connect_timeout": waiting,
        "health_check_interval": 30,
        "decode_responses": True,
        # No automatic retry: a reserve retried after a lost reply could hold twice.
        "retry": retry,
    }


def scripts() -> _Scripts:
    """The scripts bound to this process's client for ``APPLIANCE_QUOTA_REDIS_URL``."""
    url = settings.APPLIANCE_QUOTA_REDIS_URL
    with _clients_lock:
        if url not in _sync_scripts:
            pool = redis.BlockingConnectionPool.from_url(url, **_pool_options(Retry(NoBackoff(), 0)))
            client = redis.Redis(connection_pool=pool)
            _sync_scripts[url] = _Scripts(client)
        return _sync_scripts[url]


def async_scripts() -> _Scripts:
    """Like :func:`scripts` with a ``redis.asyncio`` client; asyncio clients belong to one event loop."""
    url, loop = settings.APPLIANCE_QUOTA_REDIS_URL, get_running_loop()
    cached = _async_scripts.get(loop)
    if cached is None or cached[0] != url:
        pool: aioredis.BlockingConnectionPool = aioredis.BlockingConnectionPool.from_url(
            url, **_pool_options(AsyncRetry(NoBackoff(), 0), in_loop=True)
        )
        client = aioredis.Redis(connection_pool=pool)
        cached = (url, _Scripts(client))
        _async_scripts[loop] = cached
    return cached[1]


async def aclose() -> None:
    """Close this event loop's client (at ASGI shutdown, or the end of a test's loop)."""
    cached = _async_scripts.pop(get_running_loop(), None)
    if cached is not None:
        await cached[1].client.aclose()


# --- reserve ------------------------------------------------------------------------------------


def max_tokens_cap(scopes: list[QuotaScope]) -> int | None:
    """The smallest ``max_tokens_per_request`` of the scopes (the default when a client sends none)."""
    caps = [s.max_tokens_per_request for s in scopes if s.max_tokens_per_request is not None]
    return min(caps) if caps else None


def _limit(value: int | None) -> int:
    return UNLIMITED if value is None else value


@dataclass(frozen=True)
class _Call:
    keys: list[str]
    args: list[Any]
    reservation: Reservation
    windows: Windows


def _plan_reserve(
    scopes: list[QuotaScope],
    request_id: str,
    prompt_tokens: int,
    max_tokens: int,
    ttl: int | None,
    now: float | None,
    sequences: int = 1,
) -> _Call:
    ttl = settings.APPLIANCE_QUOTA_RESERVATION_TTL_SECONDS if ttl is None else ttl
    if not scopes or not request_id or prompt_tokens < 0 or max_tokens < 0 or sequences < 1:
        raise ValueError("reserve needs scopes, a request id, non-negative token counts and a sequence")
    if len({s.key for s in scopes}) != len(scopes):
        raise ValueError("each scope may appear once")  # twice would hold its tokens twice
    if not 0 < ttl <= MAX_RESERVATION_TTL_SECONDS:
        raise ValueError(f"ttl must be within 1..{MAX_RESERVATION_TTL_SECONDS} seconds")
    _check_max_tokens(scopes, max_tokens)
    win = windows_at(time.time() if now is None else now)
    # n/best_of answers to each of a batch's prompts: the engine may write max_tokens for every one.
    worst, expires = prompt_tokens + max_tokens * sequences, win.now + ttl
    keys = [scope_keys(s.key, win)[name] for s in scopes for name in _RESERVE_KEYS]
    args: list[Any] = [int(win.now * 1000), int(expires * 1000), request_id, worst]
    for s in scopes:
        limits = (s.tokens_per_month, s.tokens_per_day, s.requests_per_minute, s.concurrent_requests)
        args.extend(_limit(v) for v in limits)
    reservation = Reservation(request_id, tuple(s.key for s in scopes), worst, expires)
    return _Call(keys, args, reservation, win)


def _check_max_tokens(scopes: list[QuotaScope], max_tokens: int) -> None:
    for scope in scopes:
        cap = scope.max_tokens_per_request
        if cap is not None and max_tokens > cap:
            name = LimitName.MAX_TOKENS_PER_REQUEST
            raise QuotaExceeded(
                REJECTION_CODES[name], name, cap, max_tokens, None, scope.label or scope.key, max_tokens
            )


def _retry_after(name: str, worst: int, limit: int, settled: int, win: Windows) -> int:
    if name == LimitName.REQUESTS_PER_MINUTE:
        return win.seconds_to_minute
    if name == LimitName.CONCURRENT_REQUESTS or settled + worst <= limit:
        return 1  # only requests in flight are in the way; they end or expire soon
    return win.seconds_to_day if name == LimitName.TOKENS_PER_DAY else win.seconds_to_month


def _check_result(result: list[Any], scopes: list[QuotaScope], call: _Call) -> None:
    if result[0] == "ok":
        return
    if result[0] == "duplicate":
        raise ValueError(f"request {call.reservation.request_id!r} already holds a reservation")
    name, index, limit, current, settled = result[0], int(result[1]), int(result[2]), int(result[3]), int(result[4])
    retry = _retry_after(name, call.reservation.reserved_tokens, limit, settled, call.windows)
    scope = scopes[index]
    tokens = name in (LimitName.TOKENS_PER_DAY, LimitName.TOKENS_PER_MONTH)
    requested = call.reservation.reserved_tokens if tokens else 1
    raise QuotaExceeded(REJECTION_CODES[name], name, limit, current, retry, scope.label or scope.key, requested)


def _unavailable(operation: str, exc: BaseException, reservation: Reservation) -> Reservation:
    fail_open = settings.APPLIANCE_QUOTA_FAIL_OPEN
    note_redis_failure(f"{operation}.{'fail_open' if fail_open else 'fail_closed'}", exc)
    if not fail_open:
        raise QuotaUnavailable(_("Quotas cannot be checked right now; try again shortly.")) from exc
    return replace(reservation, degraded=True)


async def areserve(
    scopes: list[QuotaScope],
    request_id: str,
    prompt_tokens: int,
    max_tokens: int,
    ttl: int | None = None,
    *,
    now: float | None = None,
    sequences: int = 1,
) -> Reservation:
    """Admit a request or raise :class:`QuotaExceeded` / :class:`QuotaUnavailable`; never partially reserves.

    ``max_tokens`` is per written sequence (what the per-request cap limits); ``sequences`` of them
    are reserved: n or best_of answers to each prompt of a batch.
    """
    call = _plan_reserve(scopes, request_id, prompt_tokens, max_tokens, ttl, now, sequences)
    try:
        result = await async_scripts().reserve(keys=call.keys, args=call.args)
    except redis.RedisError as exc:
        return _unavailable("reserve", exc, call.reservation)
    _check_result(result, scopes, call)
    return call.reservation


# --- settle, extend, peek --------------------------------------------------------------------


def _plan_settle(
    reservation: Reservation, prompt_tokens: int, completion_tokens: int, record: str | None, now: float | None
) -> tuple[list[str], list[Any]]:
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError("token counts cannot be negative")
    win = windows_at(time.time() if now is None else now)
    keys = [settled_key(reservation.request_id), usage_keys()["pending"]]
    keys += [scope_keys(key, win)[name] for key in reservation.scope_keys for name in _SETTLE_KEYS]
    marker_ttl = math.ceil(max(0.0, reservation.expires_at - win.now)) + SETTLED_MARKER_GRACE_SECONDS
    tokens = prompt_tokens + completion_tokens
    args = [reservation.request_id, tokens, marker_ttl, DAY_KEY_TTL_SECONDS, MONTH_KEY_TTL_SECONDS]
    return keys, [*args, record or ""]


async def asettle(
    reservation: Reservation,
    prompt_tokens: int,
    completion_tokens: int,
    *,
    record: str | None = None,
    now: float | None = None,
) -> SettleOutcome:
    """Release the reservation and charge real usage, exactly once per request id.

    ``record`` (a usage record as JSON) is queued for the drain in the same script, so it is
    queued exactly when the usage is charged. Settling after expiry still charges once.
    """
    keys, args = _plan_settle(reservation, prompt_tokens, completion_tokens, record, now)
    try:
        done = await async_scripts().settle(keys=keys, args=args)
    except redis.RedisError as exc:
        note_redis_failure("settle", exc)
        return SettleOutcome.UNAVAILABLE
    return SettleOutcome.SETTLED if done else SettleOutcome.ALREADY_SETTLED


def _plan_extend(reservation: Reservation, ttl: int, now: float | None) -> tuple[list[str], list[Any]]:
    if not 0 < ttl <= MAX_RESERVATION_TTL_SECONDS:
        raise ValueError(f"ttl must be within 1..{MAX_RESERVATION_TTL_SECONDS} seconds")
    moment = time.time() if now is None else now
    win = windows_at(moment)
    keys = [scope_keys(key, win)["res"] for key in reservation.scope_keys]
    return keys, [reservation.request_id, int((moment + ttl) * 1000), int(moment * 1000)]


async def aextend(reservation: Reservation, ttl: int, *, now: float | None = None) -> bool:
    """Push the expiry of a long request ``ttl`` seconds from now; False if it had already expired."""
    keys, args = _plan_extend(reservation, ttl, now)
    try:
        return bool(await async_scripts().extend(keys=keys, args=args))
    except redis.RedisError as exc:
        note_redis_failure("extend", exc)
        return False


def _plan_peek(scopes: list[QuotaScope], now: float | None) -> tuple[list[str], list[Any]]:
    win = windows_at(time.time() if now is None else now)
    return [scope_keys(s.key, win)[name] for s in scopes for name in _RESERVE_KEYS], [int(win.now * 1000)]


def _usages(scopes: list[QuotaScope], rows: list[Any]) -> list[ScopeUsage]:
    return [ScopeUsage(scope, *(int(v) for v in row)) for scope, row in zip(scopes, rows, strict=True)]


def current_usage(scopes: list[QuotaScope], *, now: float | None = None) -> list[ScopeUsage] | None:
    """What each scope has used and holds now (for "remaining quota"); None if Redis is unreachable."""
    if not scopes:
        return []
    keys, args = _plan_peek(scopes, now)
    try:
        rows = scripts().peek(keys=keys, args=args)
    except redis.RedisError as exc:
        note_redis_failure("peek", exc)
        return None
    return _usages(scopes, rows)


async def acurrent_usage(scopes: list[QuotaScope], *, now: float | None = None) -> list[ScopeUsage] | None:
    """:func:`current_usage` from an event loop."""
    if not scopes:
        return []
    keys, args = _plan_peek(scopes, now)
    try:
        rows = await async_scripts().peek(keys=keys, args=args)
    except redis.RedisError as exc:
        note_redis_failure("peek", exc)
        return None
    return _usages(scopes, rows)

"""Who is calling and where their model runs: one thread hop, three queries, then a short in-process cache.

The key lookup (accounts.services.authenticate_key), the replicas the key's user may reach
(deployments.routing.endpoints) and the quota scopes (quotas) are resolved together in one
``sync_to_async`` call. The result is kept for ``APPLIANCE_GATEWAY_CACHE_SECONDS`` (default 5)
per key and model, so a busy integration costs no database work and no thread hop per request.
The price is that a revoked key, a stopped replica or a changed quota takes up to that long to be
seen by each web process; a stopped replica is also caught by the retry on connection failure.
Concurrent misses of one key share a lookup, and at most ``_CONCURRENT_LOOKUPS`` run at once, so a
burst of new clients cannot exhaust the database's connections; the key check made before a body is
read (``authenticate``) and ``/v1/models`` go through the same cache and bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from appliance.accounts.models import User
from appliance.accounts.services import authenticate_key
from appliance.core import dbthreads
from appliance.core.ttlcache import TtlCache
from appliance.deployments.routing import endpoints, model_names, offered_deployments, on_demand_to_start
from appliance.gateway import metering
from appliance.gateway.errors import model_not_found, no_upstream, unauthorized
from appliance.gateway.routes import Principal, Route
from appliance.safety import labels, rules

T = TypeVar("T")
_MAX_ENTRIES = 10_000  # a bound, not a tuning knob: keys times models in use stays far below it
# Lookups (each a database connection in its own thread) run at once per process, whatever the load.
_CONCURRENT_LOOKUPS = 8


# ("key", key hash) → Principal, ("route", key hash, model) → Route, ("models", key hash) → list.
_cache: TtlCache[tuple[str, ...], Any] = TtlCache(_MAX_ENTRIES)


def clear_cache() -> None:
    _cache.clear()


def bearer_secret(header: str) -> str:
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise unauthorized("Send the console API key as `Authorization: Bearer ak_…`.")
    return secret.strip()


def _key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _authenticate(secret: str) -> tuple[User, Principal]:
    key = authenticate_key(secret)
    if key is None:
        raise unauthorized()
    user = key.user
    return user, Principal(user.pk, user.get_username(), user.department_id, key.pk)


def _principal(secret: str) -> Principal:
    return _authenticate(secret)[1]


def _resolve(secret: str, model: str) -> Route:
    user, principal = _authenticate(secret)
    found = tuple(endpoints(user, model))
    if not found:
        to_start = on_demand_to_start(user, model).get(model)
        if to_start:
            return Route(
                principal, (), tuple(metering.scopes_for(user)), tuple(to_start),
                safety=rules.matcher_for(user.department_id), ai_label=labels.shown_for(user.department_id),
            )  # fmt: skip
        # Running but with no replica up is a 503 (retry later); not usable at all is a 404.
        raise no_upstream(model) if model in model_names(user) else model_not_found(model)
    return Route(
        principal, found, tuple(metering.scopes_for(user)), safety=rules.matcher_for(user.department_id),
        ai_label=labels.shown_for(user.department_id),
    )  # fmt: skip


class _Lookups:
    """This event loop's lookups in progress, and the bound on how many run at once."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, ...], asyncio.Task[Any]] = {}
        self.slots = asyncio.Semaphore(_CONCURRENT_LOOKUPS)


_lookups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lookups] = weakref.WeakKeyDictionary()


async def _lookup(state: _Lookups, cache_key: tuple[str, ...], fn: Callable[..., T], *args: Any) -> T:
    async with state.slots:
        found = await dbthreads.run(fn, *args)
    # A route to a model being started is looked up afresh until the model runs.
    if not (isinstance(found, Route) and not found.endpoints):
        _cache.put(cache_key, found)
    return found


async def _shared(cache_key: tuple[str, ...], fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread, cached, shared by concurrent callers and bounded in number.

    Requests that miss the cache together share one lookup (when an entry expires under load, all
    the requests in flight for that key would otherwise open a database connection each), and at
    most ``_CONCURRENT_LOOKUPS`` run at once, whatever the number of distinct keys.
    """
    cached, value = _cache.get(cache_key)
    if cached:
        return cast(T, value)
    state = _lookups.setdefault(asyncio.get_running_loop(), _Lookups())
    task = state.pending.get(cache_key)
    if task is None:
        task = asyncio.ensure_future(_lookup(state, cache_key, fn, *args))
        state.pending[cache_key] = task
        task.add_done_callback(lambda _done: state.pending.pop(cache_key, None))
    # Shielded: one waiter's client leaving must not cancel the lookup the others wait for.
    return await asyncio.shield(task)


async def authenticate(secret: str) -> Principal:
    """The key's owner, or a 401 GatewayError: checked before the request's body is read (asgi.py)."""
    return await _shared(("key", _key_hash(secret)), _principal, secret)


async def route(secret: str, model: str) -> Route:
    """The caller and the replicas of ``model`` they may use; raises a 401, 404 or 503 GatewayError."""
    return await _shared(("route", _key_hash(secret), model), _resolve, secret, model)


def _models(secret: str) -> list[tuple[str, int]]:
    user, _principal = _authenticate(secret)
    created: dict[str, int] = {}
    for name, at in offered_deployments(user).values_list("served_model_name", "created_at"):
        stamp = int(at.timestamp())
        created[name] = min(stamp, created.get(name, stamp))
    return sorted(created.items())


async def models(secret: str) -> list[tuple[str, int]]:
    """(served model name, creation time) of every deployment the key's user may use: running, or on
    demand (a request starts it); looked up like routes: cached, shared and within the bound."""
    return await _shared(("models", _key_hash(secret)), _models, secret)

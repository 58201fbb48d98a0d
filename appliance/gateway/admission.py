"""Who is calling and where their model runs: one thread hop, three queries, then a short in-process cache.

The key lookup (accounts.services.authenticate_key), the replicas the key's user may reach
(deployments.routing.endpoints) and the quota scopes (quotas) are resolved together in one
``sync_to_async`` call. The result is kept for ``APPLIANCE_GATEWAY_CACHE_SECONDS`` (default 5)
per key and model, so a busy integration costs no database work and no thread hop per request.
The price is that a revoked key, a stopped replica or a changed quota takes up to that long to be
seen by each web process; a stopped replica is also caught by the retry on connection failure.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from appliance.accounts.models import User
from appliance.accounts.services import authenticate_key
from appliance.deployments.routing import Endpoint, endpoints, model_names, usable_deployments
from appliance.gateway import metering
from appliance.gateway.errors import model_not_found, no_upstream, unauthorized

_MAX_ENTRIES = 10_000  # a bound, not a tuning knob: keys times models in use stays far below it


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    department_id: int | None
    api_key_id: int


@dataclass(frozen=True)
class Route:
    principal: Principal
    endpoints: tuple[Endpoint, ...]
    scopes: tuple[metering.Scope, ...]


_cache: dict[tuple[str, str], tuple[float, Route]] = {}


def clear_cache() -> None:
    _cache.clear()


def bearer_secret(header: str) -> str:
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise unauthorized("Send the console API key as `Authorization: Bearer ak_…`.")
    return secret.strip()


def _authenticate(secret: str) -> tuple[User, Principal]:
    key = authenticate_key(secret)
    if key is None:
        raise unauthorized()
    user = key.user
    return user, Principal(user.pk, user.get_username(), user.department_id, key.pk)


def _resolve(secret: str, model: str) -> Route:
    user, principal = _authenticate(secret)
    found = tuple(endpoints(user, model))
    if not found:
        # Running but with no replica up is a 503 (retry later); not usable at all is a 404.
        raise no_upstream(model) if model in model_names(user) else model_not_found(model)
    return Route(principal, found, tuple(metering.scopes_for(user)))


async def route(secret: str, model: str) -> Route:
    """The caller and the replicas of ``model`` they may use; raises a 401, 404 or 503 GatewayError."""
    ttl = settings.APPLIANCE_GATEWAY_CACHE_SECONDS
    cache_key = (hashlib.sha256(secret.encode()).hexdigest(), model)
    now = time.monotonic()
    hit = _cache.get(cache_key)
    if hit is not None and hit[0] > now:
        return hit[1]
    found = await sync_to_async(_resolve)(secret, model)
    if ttl > 0:
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        _cache[cache_key] = (now + ttl, found)
    return found


def _models(secret: str) -> list[tuple[str, int]]:
    user, _principal = _authenticate(secret)
    created: dict[str, int] = {}
    for name, at in usable_deployments(user).values_list("served_model_name", "created_at"):
        stamp = int(at.timestamp())
        created[name] = min(stamp, created.get(name, stamp))
    return sorted(created.items())


async def models(secret: str) -> list[tuple[str, int]]:
    """(served model name, creation time) of every running deployment the key's user may use."""
    return await sync_to_async(_models)(secret)

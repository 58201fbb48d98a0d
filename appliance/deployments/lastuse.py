"""When each deployment last served a request, for the idle check of on-demand deployments.

The gateway and the chat touch a Redis key per deployment as requests start, stream and end; the
idle check (``ondemand.stop_idle_deployments``, a beat task) reads the keys and copies them to
``Deployment.last_used_at``. A touch costs a dictionary lookup: each process writes a deployment's
key at most once per ``TOUCH_EVERY_SECONDS``, in a task of its own that never delays the request,
so the recorded time lags the truth by that much at most (far below a timeout counted in minutes).
Redis being down loses touches, never a request; the idle check then sees older times and may
stop a deployment early, which the next request undoes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime

import redis
import redis.asyncio as aioredis
from django.conf import settings

from appliance.core import background

logger = logging.getLogger(__name__)

TOUCH_EVERY_SECONDS = 10.0
KEY_TTL_SECONDS = 8 * 24 * 3600  # longer than the longest idle timeout (a week)

_touched: dict[int, float] = {}  # deployment id -> when this process last wrote its key (monotonic)
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def key(deployment_id: int) -> str:
    # The console's id keeps two consoles (or test sessions) sharing one Redis apart.
    return f"{settings.CONSOLE_ID}:deployments:last-used:{deployment_id}"


def _aclient() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    return client


_sync_client: redis.Redis | None = None


def _client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    return _sync_client


async def _write(deployment_id: int, at: float) -> None:
    try:
        await _aclient().set(key(deployment_id), f"{at:.3f}", ex=KEY_TTL_SECONDS)
    except (redis.RedisError, OSError) as exc:
        _touched.pop(deployment_id, None)  # try again at the next request
        logger.warning("last use of deployment %s not recorded: %s", deployment_id, exc)


def touch(*deployment_ids: int) -> None:
    """Note that these deployments are in use now. Cheap enough to call for every streamed chunk;
    must be called in a running event loop (the gateway's and the chat's code all is)."""
    now = time.monotonic()
    for deployment_id in deployment_ids:
        if now - _touched.get(deployment_id, -TOUCH_EVERY_SECONDS) < TOUCH_EVERY_SECONDS:
            continue
        _touched[deployment_id] = now
        background.start(_write(deployment_id, time.time()))


def forget_throttle() -> None:
    """Tests: make the next touch write at once."""
    _touched.clear()


def read(deployment_ids: Iterable[int]) -> dict[int, datetime]:
    """The last recorded use of each deployment that has one."""
    ids = list(deployment_ids)
    if not ids:
        return {}
    values = _client().mget([key(i) for i in ids])
    return {i: datetime.fromtimestamp(float(v), UTC) for i, v in zip(ids, values, strict=True) if v is not None}


def record(deployment_id: int, at: datetime) -> None:
    """Set the last use outright (tests, and a start: a woken deployment counts as just used)."""
    _client().set(key(deployment_id), f"{at.timestamp():.3f}", ex=KEY_TTL_SECONDS)

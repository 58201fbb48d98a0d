"""Time windows of the limits and the Redis key layout, in one place.

Days and months begin at local midnight in the console's TIME_ZONE (Asia/Shanghai by default),
so "tokens per day" resets when the department's working day does, not at 08:00 UTC.

Key layout (``<p>`` is ``<CONSOLE_ID>:quota``; ``<s>`` a scope, ``d:<department id>`` or ``u:<user id>``):

- ``<p>:<s>:res``          sorted set: request id → reservation expiry (epoch ms); its size is the
  number of requests in flight
- ``<p>:<s>:amt``          hash: request id → tokens reserved (prompt + max_tokens)
- ``<p>:<s>:held``         string: sum of ``amt`` (deleted when ``res`` becomes empty)
- ``<p>:<s>:day:<YYYYMMDD>``  settled tokens of that local day (expires after 2 days)
- ``<p>:<s>:mon:<YYYYMM>``    settled tokens of that local month (expires after 40 days)
- ``<p>:<s>:rpm:<YYYYMMDDHHMM>``  requests started in that minute (expires after 2 minutes)
- ``<p>:settled:<request id>``  settle marker: a second settle is a no-op (expires an hour after the
  reservation would have)
- ``<CONSOLE_ID>:usage:pending`` / ``:processing`` / ``:dead``  usage records waiting for the drain,
  taken by a drain that has not finished them, and those that could not be parsed
- ``<CONSOLE_ID>:usage:drain-lock``  one drain at a time
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings

DAY_KEY_TTL_SECONDS = 2 * 24 * 3600
MONTH_KEY_TTL_SECONDS = 40 * 24 * 3600
MINUTE_KEY_TTL_SECONDS = 120


def local_zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def quota_prefix() -> str:
    return f"{settings.CONSOLE_ID}:quota"


def usage_prefix() -> str:
    return f"{settings.CONSOLE_ID}:usage"


@dataclass(frozen=True)
class Windows:
    """The windows a moment falls in, and how long until each ends."""

    now: float  # epoch seconds
    day: date
    day_tag: str
    month_tag: str
    minute_tag: str
    seconds_to_minute: int
    seconds_to_day: int
    seconds_to_month: int


def windows_at(now: float) -> Windows:
    """The windows at ``now``. Built once per second and zone (every request reserves and settles with
    them): each field is the same for any instant of one second, the boundaries being whole seconds
    and each count rounded up."""
    return replace(_windows_of_second(math.floor(now), settings.TIME_ZONE), now=now)


@functools.lru_cache(maxsize=4)
def _windows_of_second(now: int, zone: str) -> Windows:
    local = datetime.fromtimestamp(now, tz=ZoneInfo(zone))
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=local.tzinfo)
    first = local.date().replace(day=1)
    next_month = (first + timedelta(days=32)).replace(day=1)
    month_start = datetime.combine(next_month, datetime.min.time(), tzinfo=local.tzinfo)
    return Windows(
        now=now,
        day=local.date(),
        day_tag=local.strftime("%Y%m%d"),
        month_tag=local.strftime("%Y%m"),
        minute_tag=local.strftime("%Y%m%d%H%M"),
        seconds_to_minute=_ceil_at_least_one(60 - (now % 60)),
        seconds_to_day=_ceil_at_least_one(midnight.timestamp() - now),
        seconds_to_month=_ceil_at_least_one(month_start.timestamp() - now),
    )


def _ceil_at_least_one(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def scope_keys(scope_key: str, win: Windows) -> dict[str, str]:
    base = f"{quota_prefix()}:{scope_key}"
    return {
        "res": f"{base}:res",
        "amt": f"{base}:amt",
        "held": f"{base}:held",
        "day": f"{base}:day:{win.day_tag}",
        "month": f"{base}:mon:{win.month_tag}",
        "rpm": f"{base}:rpm:{win.minute_tag}",
    }


def settled_key(request_id: str) -> str:
    return f"{quota_prefix()}:settled:{request_id}"


def usage_keys() -> dict[str, str]:
    base = usage_prefix()
    return {
        "pending": f"{base}:pending",
        "processing": f"{base}:processing",
        "dead": f"{base}:dead",
        "lock": f"{base}:drain-lock",
    }

"""Least-requests-in-flight choice among the replicas of one model, counted across every web process.

Used by the engine client (``client.py``) for the gateway's requests and the chat's answers alike.

The console runs several worker processes (``manage.py serve``); a count kept in one of them sees only
its share of the traffic, so a replica busy with another process's long stream looked idle. For a model
with several replicas each relayed request is therefore a member of a Redis sorted set per instance
(``<CONSOLE_ID>:gw:inflight:<instance id>``, in the quota Redis both already talk to), scored
with the time after which it stops counting: a process that dies mid-request leaves entries that lapse
by themselves, never a count stuck high. Choosing costs one pipelined round trip; taking and leaving
a slot one command each. A model with one replica has nothing to choose and touches no shared state.
When Redis does not answer, this process's own counts decide. Ties are broken by a rotating offset, so
idle replicas share sequential traffic instead of the first one taking all of it.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from appliance.deployments.routing import Endpoint
from appliance.quotas import limiter

logger = logging.getLogger(__name__)

_in_flight: Counter[int] = Counter()  # instance id -> requests relayed by this process now
_turn = itertools.count()
LAPSE_MARGIN_SECONDS = 60  # past the longest a relayed request may last, an entry no longer counts


@dataclass(frozen=True)
class Lease:
    """One request's slot on one replica; ``member`` is its entry in the shared count, if it has one."""

    endpoint: Endpoint
    member: str | None


def _key(instance_id: int) -> str:
    return f"{settings.CONSOLE_ID}:gw:inflight:{instance_id}"


def _lapse() -> float:
    longest = max(settings.APPLIANCE_GATEWAY_READ_TIMEOUT_SECONDS, settings.CHAT_UPSTREAM_READ_TIMEOUT_SECONDS)
    return time.time() + longest + LAPSE_MARGIN_SECONDS


def in_flight(instance_id: int) -> int:
    """Requests this process relays to the instance now."""
    return _in_flight[instance_id]


async def shared_in_flight(endpoints: Sequence[Endpoint]) -> list[int]:
    """Requests every process relays to each instance now (entries past their time are dropped first)."""
    pipe = limiter.async_scripts().client.pipeline(transaction=False)
    now = time.time()
    for endpoint in endpoints:
        pipe.zremrangebyscore(_key(endpoint.instance_id), "-inf", now)
        pipe.zcard(_key(endpoint.instance_id))
    replies = await pipe.execute()
    return [int(n) for n in replies[1::2]]


async def ordered(endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    """The replicas to try, best first: fewest in flight across the processes, ties rotated."""
    if len(endpoints) == 1:
        return list(endpoints)
    offset = next(_turn) % len(endpoints)
    rotated = [*endpoints[offset:], *endpoints[:offset]]
    try:
        counts = dict(zip((e.instance_id for e in rotated), await shared_in_flight(rotated), strict=True))
    except (RedisError, OSError) as exc:
        logger.warning("engines: shared in-flight counts unavailable (%s); balancing on this process's own", exc)
        counts = {e.instance_id: _in_flight[e.instance_id] for e in rotated}
    return sorted(rotated, key=lambda e: counts[e.instance_id])  # stable: the rotation breaks ties


async def acquire(endpoint: Endpoint, shared: bool) -> Lease:
    """Take a slot on ``endpoint``; ``shared`` when the model has several replicas to balance between."""
    _in_flight[endpoint.instance_id] += 1
    if not shared:
        return Lease(endpoint, None)
    member = uuid.uuid4().hex
    try:
        await limiter.async_scripts().client.zadd(_key(endpoint.instance_id), {member: _lapse()})
    except (RedisError, OSError) as exc:
        logger.warning("engines: could not count a request in flight (%s)", exc)
        return Lease(endpoint, None)
    return Lease(endpoint, member)


async def release(lease: Lease) -> None:
    _in_flight[lease.endpoint.instance_id] -= 1
    if _in_flight[lease.endpoint.instance_id] <= 0:
        del _in_flight[lease.endpoint.instance_id]
    if lease.member is None:
        return
    try:
        await limiter.async_scripts().client.zrem(_key(lease.endpoint.instance_id), lease.member)
    except (RedisError, OSError) as exc:  # the entry lapses by itself
        logger.warning("engines: could not uncount a request in flight (%s)", exc)

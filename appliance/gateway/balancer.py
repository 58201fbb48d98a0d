"""Least-requests-in-flight choice among the replicas of one model.

The counters live in this process: each web process balances the requests it relays, which is
exact with one process and close enough with a few (each sees a similar share of the traffic).
A shared counter in Redis would cost a round trip per request and could leak on a crash; the
engines' own queues absorb what the approximation misses. Ties are broken by a rotating offset,
so idle replicas share sequential traffic instead of the first one taking all of it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

from appliance.deployments.routing import Endpoint

_in_flight: Counter[int] = Counter()  # instance id -> requests relayed by this process now
_turn = itertools.count()


def in_flight(instance_id: int) -> int:
    return _in_flight[instance_id]


def ordered(endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    """The replicas to try, best first: fewest in flight, ties rotated."""
    if len(endpoints) == 1:
        return list(endpoints)
    offset = next(_turn) % len(endpoints)
    rotated = [*endpoints[offset:], *endpoints[:offset]]
    return sorted(rotated, key=lambda e: _in_flight[e.instance_id])  # stable: the rotation breaks ties


def acquire(endpoint: Endpoint) -> None:
    _in_flight[endpoint.instance_id] += 1


def release(endpoint: Endpoint) -> None:
    _in_flight[endpoint.instance_id] -= 1
    if _in_flight[endpoint.instance_id] <= 0:
        del _in_flight[endpoint.instance_id]

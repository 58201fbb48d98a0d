"""Quota tests run against real Redis, database 13.

Several test runs may share that database at once (every engineer's full suite runs these tests),
so each test gets its own key prefix through ``CONSOLE_ID`` and removes only its own keys; a
FLUSHDB here would wipe a neighbour's test in the middle.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from appliance.quotas import limiter

TEST_REDIS_URL = "redis://127.0.0.1:6379/13"
# Nothing listens on port 1: connections are refused at once, as when Redis is down.
DEAD_REDIS_URL = "redis://127.0.0.1:1/13"


@pytest.fixture(autouse=True)
def quota_redis(settings: Any) -> Iterator[redis.Redis]:
    settings.APPLIANCE_QUOTA_REDIS_URL = TEST_REDIS_URL
    settings.APPLIANCE_QUOTA_FAIL_OPEN = False
    # Generous: these tests share two CPUs with other suites; the race tests queue 500 callers.
    settings.APPLIANCE_QUOTA_REDIS_TIMEOUT_MS = 5000
    settings.CONSOLE_ID = prefix = f"qtest-{uuid.uuid4().hex[:12]}"
    client = limiter.scripts().client
    yield client
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis_down(settings: Any) -> None:
    settings.APPLIANCE_QUOTA_REDIS_URL = DEAD_REDIS_URL

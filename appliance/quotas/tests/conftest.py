"""Quota tests run against real Redis, database 13 (no other suite uses it), emptied around each test."""

from __future__ import annotations

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
    client = limiter.scripts().client
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def redis_down(settings: Any) -> None:
    settings.APPLIANCE_QUOTA_REDIS_URL = DEAD_REDIS_URL

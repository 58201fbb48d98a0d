"""Chat test fixtures: Redis database 11 for chat events, live answers and quotas; a fake engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from appliance.accounts.models import User
from appliance.chat import live
from appliance.chat.tests.factories import running_deployment
from appliance.chat.tests.fake_engine import FakeEngine
from appliance.core import ttlcache
from appliance.deployments.models import Deployment
from tests.served import served_database_url, served_env

REDIS_URL = "redis://127.0.0.1:6379/11"


def served_chat_env() -> dict[str, str]:
    """A console served for a chat test (``tests.served``): the test database and the chat's Redis."""
    return served_env(
        DATABASE_URL=served_database_url(),
        CONSOLE_ENV="test",
        CHAT_REDIS_URL=REDIS_URL,
        APPLIANCE_QUOTA_REDIS_URL=REDIS_URL,
        CONSOLE_LOG_LEVEL="WARNING",
    )


@pytest.fixture(autouse=True)
def chat_redis(settings: Any) -> Iterator[None]:
    settings.CHAT_REDIS_URL = REDIS_URL
    settings.APPLIANCE_QUOTA_REDIS_URL = REDIS_URL
    redis.Redis.from_url(REDIS_URL).flushdb()
    live._sync_client = None
    ttlcache.clear_all()
    yield
    live._sync_client = None


@pytest.fixture(scope="session")
def fake_engine() -> Iterator[FakeEngine]:
    engine = FakeEngine().start()
    yield engine
    engine.stop()


@pytest.fixture
def engine(fake_engine: FakeEngine) -> FakeEngine:
    fake_engine.reset()
    return fake_engine


@pytest.fixture
def eng_model(personas: dict[str, User], engine: FakeEngine) -> Deployment:
    """The fake engine, deployed for the 研发部 (eng) department: alice, bob and carol (a sub-department) may use it."""
    return running_deployment(personas["alice"].department, personas["alice"], engine.model, engine.port)

"""Metering for callers: every ending of a request settles once and queues one usage record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis
from asgiref.sync import async_to_sync

from appliance.accounts.models import User
from appliance.quotas import limiter
from appliance.quotas.drain import drain
from appliance.quotas.limiter import QuotaExceeded, QuotaScope, QuotaUnavailable, SettleOutcome
from appliance.quotas.models import UsageRecord
from appliance.quotas.usage import Guard, RequestMeta, abegin, metered
from appliance.quotas.windows import usage_keys

META = RequestMeta(user_id=None, department_id=None, api_key_id=None, deployment_id=7, model="deepseek-r1-7b")
SCOPES = [QuotaScope("u:1", concurrent_requests=1), QuotaScope("d:1", tokens_per_day=10_000)]


@pytest_asyncio.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Each test's event loop has its own Redis client; close it with the loop."""
    yield
    await limiter.aclose()


def queued(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(item) for item in reversed(client.lrange(usage_keys()["pending"], 0, -1))]


def in_flight() -> int:
    usage = limiter.current_usage(SCOPES)
    assert usage is not None
    return usage[0].requests_in_flight


@pytest.mark.asyncio
async def test_begin_finish_settles_and_queues_one_record(quota_redis: redis.Redis) -> None:
    guard = await abegin(SCOPES, META, request_id="req-1", prompt_tokens=30, max_tokens=500)
    assert in_flight() == 1
    guard.first_token()
    guard.add_completion_tokens(5)
    guard.add_completion_tokens(7)
    assert await guard.afinish() == SettleOutcome.SETTLED
    assert await guard.afinish() is None  # a second finish (say, from a finally block) does nothing
    assert in_flight() == 0
    [record] = queued(quota_redis)
    assert record["request_id"] == "req-1" and record["status"] == "ok"
    assert (record["prompt_tokens"], record["completion_tokens"], record["deployment_id"]) == (30, 12, 7)
    assert record["ttft_ms"] is not None and record["latency_ms"] >= record["ttft_ms"]


@pytest.mark.asyncio
async def test_guard_context_marks_errors_and_user_stop(quota_redis: redis.Redis) -> None:
    with pytest.raises(RuntimeError):
        async with await abegin(SCOPES, META, request_id="boom", prompt_tokens=1, max_tokens=1):
            raise RuntimeError("engine died")
    async with await abegin(SCOPES, META, request_id="stop", prompt_tokens=1, max_tokens=1) as guard:
        guard.cancel()
    assert [r["status"] for r in queued(quota_redis)] == ["error", "cancelled"]
    assert in_flight() == 0


@pytest.mark.asyncio
async def test_engine_usage_replaces_the_running_count(quota_redis: redis.Redis) -> None:
    async with await abegin(SCOPES, META, request_id="u", prompt_tokens=10, max_tokens=100) as guard:
        guard.add_completion_tokens(3)
        guard.set_usage(12, 40)
    [record] = queued(quota_redis)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (12, 40)
    usage = limiter.current_usage(SCOPES)
    assert usage is not None and usage[1].tokens_today == 52


@pytest.mark.asyncio
async def test_rejection_is_recorded_and_raised(quota_redis: redis.Redis) -> None:
    holder = await abegin(SCOPES, META, request_id="first", prompt_tokens=1, max_tokens=1)
    with pytest.raises(QuotaExceeded):
        await abegin(SCOPES, META, request_id="second", prompt_tokens=9, max_tokens=1)
    await holder.afinish()
    statuses = {r["request_id"]: (r["status"], r["prompt_tokens"], r["reason"]) for r in queued(quota_redis)}
    assert statuses == {"second": ("rejected", 9, "concurrent_requests"), "first": ("ok", 1, "")}


@pytest.mark.django_db
def test_redis_down_writes_the_record_to_the_database_directly(
    settings: Any, redis_down: None, personas: dict[str, User]
) -> None:
    bob = personas["bob"]
    meta = RequestMeta(user_id=bob.pk, department_id=bob.department_id, model="m")

    # async_to_sync: the direct writes (sync_to_async) come back to this thread, inside the test's transaction.
    @async_to_sync
    async def requests() -> Guard:
        with pytest.raises(QuotaUnavailable):
            await abegin(SCOPES, meta, request_id="closed", prompt_tokens=1, max_tokens=1)
        settings.APPLIANCE_QUOTA_FAIL_OPEN = True
        async with await abegin(SCOPES, meta, request_id="open", prompt_tokens=3, max_tokens=9) as guard:
            guard.add_completion_tokens(4)
        await limiter.aclose()
        return guard

    guard = requests()
    assert guard.outcome == SettleOutcome.UNAVAILABLE
    rows = {r: (s, why) for r, s, why in UsageRecord.objects.values_list("request_id", "status", "reason")}
    assert rows == {"closed": ("rejected", "quota_unavailable"), "open": ("ok", "")}
    assert UsageRecord.objects.get(request_id="open").user == bob


@pytest.mark.django_db
def test_a_record_written_directly_and_also_queued_is_stored_once(quota_redis: redis.Redis) -> None:
    """Redis answered the settle but the reply was lost: both paths carry the same uid."""

    @async_to_sync
    async def request() -> None:
        async with await abegin(SCOPES, META, request_id="twice", prompt_tokens=1, max_tokens=1):
            pass
        await limiter.aclose()

    request()
    from appliance.quotas.usage import write_directly

    write_directly(queued(quota_redis))
    drain()
    assert UsageRecord.objects.filter(request_id="twice").count() == 1


@pytest.mark.asyncio
async def test_metered_settles_on_success_error_and_client_disconnect(quota_redis: redis.Redis) -> None:
    async with metered(SCOPES, META, request_id="a-ok", prompt_tokens=5, max_tokens=50) as guard:
        guard.first_token()
        guard.add_completion_tokens(20)
        await guard.atouch()
    with pytest.raises(ConnectionError):
        async with metered(SCOPES, META, request_id="a-err", prompt_tokens=5, max_tokens=50):
            raise ConnectionError("engine connection reset")

    started = asyncio.Event()

    async def stream() -> None:
        async with metered(SCOPES, META, request_id="a-gone", prompt_tokens=5, max_tokens=50) as guard:
            guard.add_completion_tokens(2)
            started.set()
            await asyncio.sleep(60)  # waiting on the engine when the client goes away

    task = asyncio.create_task(stream())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    statuses = {r["request_id"]: (r["status"], r["completion_tokens"]) for r in queued(quota_redis)}
    assert statuses == {"a-ok": ("ok", 20), "a-err": ("error", 0), "a-gone": ("cancelled", 2)}
    assert in_flight() == 0
    await limiter.aclose()


@pytest.mark.asyncio
async def test_streaming_body_pattern_settles_when_the_generator_is_closed(quota_redis: redis.Redis) -> None:
    """The gateway admits before responding, then settles inside the body; Django closes it on disconnect."""
    guard = await abegin(SCOPES, META, request_id="gen", prompt_tokens=5, max_tokens=50)

    async def body() -> Any:
        async with guard:
            for i in range(100):
                guard.add_completion_tokens(1)
                yield f"chunk {i}"

    stream = body()
    assert await anext(stream) == "chunk 0"
    await stream.aclose()
    [record] = queued(quota_redis)
    assert (record["status"], record["completion_tokens"]) == ("cancelled", 1)
    assert in_flight() == 0
    await limiter.aclose()

"""The limiter against real Redis: atomic admission under races, settling, expiry, rejections."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
import redis

from appliance.quotas import limiter
from appliance.quotas.limiter import QuotaExceeded, QuotaScope, QuotaUnavailable, Reservation, SettleOutcome
from appliance.quotas.windows import scope_keys, settled_key, windows_at

SHANGHAI = ZoneInfo("Asia/Shanghai")
MID_MONTH = datetime(2026, 1, 15, 12, 0, 0, tzinfo=SHANGHAI).timestamp()
PARALLEL = 500


@pytest_asyncio.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Each test's event loop has its own Redis client; close it with the loop."""
    yield
    await limiter.aclose()


def rid() -> str:
    return uuid.uuid4().hex


def day_total(client: redis.Redis, scope: str, now: float | None = None) -> int:
    return int(client.get(scope_keys(scope, windows_at(now or time.time()))["day"]) or 0)


def held(client: redis.Redis, scope: str) -> tuple[int, int, int]:
    """(reservations in flight, their hash entries, tokens held): all zero when nothing leaks."""
    keys = scope_keys(scope, windows_at(time.time()))
    return int(client.zcard(keys["res"])), int(client.hlen(keys["amt"])), int(client.get(keys["held"]) or 0)


async def gather(count: int, work: Any) -> list[Any]:
    """Start ``count`` calls of ``work(i)`` at once on this event loop; return results (or rejections) in order."""

    async def one(i: int) -> Any:
        try:
            return await work(i)
        except QuotaExceeded as exc:
            return exc

    return list(await asyncio.gather(*(one(i) for i in range(count))))


# --- races: never oversold -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_500_parallel_reservations_admit_at_most_n_by_tokens_per_day(quota_redis: redis.Redis) -> None:
    n, prompt, max_tokens = 37, 100, 400
    dept = QuotaScope("d:1", tokens_per_day=n * (prompt + max_tokens))
    scopes = [QuotaScope("u:1"), dept]
    results = await gather(PARALLEL, lambda i: limiter.areserve(scopes, f"r{i}", prompt, max_tokens))
    admitted = [r for r in results if isinstance(r, Reservation)]
    rejected = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(admitted) == n and len(rejected) == PARALLEL - n
    assert {r.code for r in rejected} == {"quota_exceeded"}
    real = {r.request_id: (prompt, random.randint(0, max_tokens)) for r in admitted}
    await gather(len(admitted), lambda i: limiter.asettle(admitted[i], *real[admitted[i].request_id]))
    expected = sum(p + c for p, c in real.values())
    assert day_total(quota_redis, "d:1") == expected == day_total(quota_redis, "u:1")
    assert held(quota_redis, "d:1") == (0, 0, 0) and held(quota_redis, "u:1") == (0, 0, 0)


@pytest.mark.asyncio
async def test_500_parallel_reservations_admit_at_most_n_by_concurrency() -> None:
    n = 25
    scopes = [QuotaScope("u:2", concurrent_requests=n), QuotaScope("d:1")]
    results = await gather(PARALLEL, lambda i: limiter.areserve(scopes, f"c{i}", 10, 10))
    admitted = [r for r in results if isinstance(r, Reservation)]
    assert len(admitted) == n
    codes = {r.code for r in results if isinstance(r, QuotaExceeded)}
    assert codes == {"too_many_concurrent_requests"}


@pytest.mark.asyncio
async def test_reserve_and_settle_racing_never_charge_more_than_the_budget(quota_redis: redis.Redis) -> None:
    """Requests end while others start: admitted count varies, settled usage never exceeds the limit."""
    limit = 20_000
    scopes = [QuotaScope("d:7", tokens_per_day=limit)]
    settled: list[int] = []

    async def request(i: int) -> bool:
        try:
            reservation = await limiter.areserve(scopes, f"m{i}", 50, 450)
        except QuotaExceeded:
            return False
        used = random.randint(0, 450)
        await limiter.asettle(reservation, 50, used)
        settled.append(50 + used)
        return True

    results = await gather(PARALLEL, request)
    assert sum(results) == len(settled) >= limit // 500
    assert day_total(quota_redis, "d:7") == sum(settled) <= limit
    assert held(quota_redis, "d:7") == (0, 0, 0)


@pytest.mark.asyncio
async def test_500_concurrent_async_reservations_on_many_connections(quota_redis: redis.Redis) -> None:
    n = 40
    scopes = [QuotaScope("u:3", concurrent_requests=n, tokens_per_month=10**9)]

    async def one(i: int) -> Reservation | None:
        try:
            return await limiter.areserve(scopes, f"a{i}", 5, 5)
        except QuotaExceeded:
            return None

    results = await asyncio.gather(*(one(i) for i in range(PARALLEL)))
    admitted = [r for r in results if r is not None]
    assert len(admitted) == n
    outcomes = await asyncio.gather(*(limiter.asettle(r, 5, 3) for r in admitted))
    assert set(outcomes) == {SettleOutcome.SETTLED}
    assert day_total(quota_redis, "u:3") == 8 * n
    assert held(quota_redis, "u:3") == (0, 0, 0)
    await limiter.aclose()


# --- settling ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_settle_is_idempotent(quota_redis: redis.Redis) -> None:
    scopes = [QuotaScope("u:1"), QuotaScope("d:1", tokens_per_day=1000)]
    reservation = await limiter.areserve(scopes, rid(), 100, 300)
    assert await limiter.asettle(reservation, 100, 20) == SettleOutcome.SETTLED
    assert await limiter.asettle(reservation, 100, 20) == SettleOutcome.ALREADY_SETTLED
    assert await limiter.asettle(reservation, 999, 999) == SettleOutcome.ALREADY_SETTLED
    assert day_total(quota_redis, "d:1") == 120 and day_total(quota_redis, "u:1") == 120
    assert held(quota_redis, "d:1") == (0, 0, 0)


@pytest.mark.asyncio
async def test_settle_counts_the_month_too(quota_redis: redis.Redis) -> None:
    scopes = [QuotaScope("d:1", tokens_per_month=1000)]
    await limiter.asettle(await limiter.areserve(scopes, rid(), 300, 200, now=MID_MONTH), 300, 200, now=MID_MONTH)
    with pytest.raises(QuotaExceeded) as info:
        await limiter.areserve(scopes, rid(), 300, 300, now=MID_MONTH + 86400)  # the next day, same month
    assert info.value.limit_name == "tokens_per_month" and info.value.current == 500
    month_start = datetime(2026, 2, 1, tzinfo=SHANGHAI).timestamp()
    assert info.value.retry_after_seconds == int(month_start - MID_MONTH - 86400)


# --- expiry -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unsettled_reservation_expires_and_releases_everything(quota_redis: redis.Redis) -> None:
    scopes = [QuotaScope("u:1", concurrent_requests=1), QuotaScope("d:1", tokens_per_day=1000)]
    await limiter.areserve(scopes, rid(), 100, 900, ttl=1)
    with pytest.raises(QuotaExceeded):
        await limiter.areserve(scopes, rid(), 1, 1)
    time.sleep(1.1)
    second = await limiter.areserve(scopes, rid(), 100, 900, ttl=30)  # the expired one was dropped in the script
    assert held(quota_redis, "u:1") == (1, 1, 1000)
    await limiter.asettle(second, 100, 0)
    assert held(quota_redis, "u:1") == (0, 0, 0) and held(quota_redis, "d:1") == (0, 0, 0)
    assert day_total(quota_redis, "d:1") == 100  # the expired request charged nothing


@pytest.mark.asyncio
async def test_settle_after_expiry_records_real_usage_exactly_once(quota_redis: redis.Redis) -> None:
    t0 = MID_MONTH
    scopes = [QuotaScope("d:1", tokens_per_day=10_000, concurrent_requests=5)]
    late = await limiter.areserve(scopes, rid(), 100, 900, ttl=5, now=t0)
    await limiter.areserve(scopes, rid(), 1, 1, ttl=60, now=t0 + 10)  # purges the expired reservation
    assert held(quota_redis, "d:1") == (1, 1, 2)
    assert await limiter.asettle(late, 100, 400, now=t0 + 11) == SettleOutcome.SETTLED
    assert await limiter.asettle(late, 100, 400, now=t0 + 12) == SettleOutcome.ALREADY_SETTLED
    marker_ttl = quota_redis.ttl(settled_key(late.request_id))
    assert 3600 - 5 < marker_ttl <= 3600  # expired already: the grace hour only
    assert day_total(quota_redis, "d:1", t0 + 11) == 500
    assert held(quota_redis, "d:1") == (1, 1, 2)  # the other request is untouched


@pytest.mark.asyncio
async def test_extend_keeps_a_long_request_alive_but_never_revives_an_expired_one() -> None:
    t0 = MID_MONTH
    scopes = [QuotaScope("u:9", concurrent_requests=1)]
    long = await limiter.areserve(scopes, rid(), 1, 1, ttl=10, now=t0)
    assert await limiter.aextend(long, 10, now=t0 + 8)
    with pytest.raises(QuotaExceeded):
        await limiter.areserve(scopes, rid(), 1, 1, now=t0 + 15)  # still held thanks to the extension
    assert not await limiter.aextend(long, 10, now=t0 + 30)


# --- scopes and rejections ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_user_quota_inside_department_quota_both_checked_in_one_step(quota_redis: redis.Redis) -> None:
    dept = QuotaScope("d:1", tokens_per_day=1500, label="研发部")
    bob = [QuotaScope("u:10", tokens_per_day=1000, label="bob"), dept]
    carol = [QuotaScope("u:11"), dept]
    await limiter.asettle(await limiter.areserve(bob, rid(), 500, 500), 500, 500)
    with pytest.raises(QuotaExceeded) as info:
        await limiter.areserve(bob, rid(), 1, 0)
    assert (info.value.scope, info.value.limit_name, info.value.current) == ("bob", "tokens_per_day", 1000)
    await limiter.asettle(await limiter.areserve(carol, rid(), 250, 250), 250, 250)
    with pytest.raises(QuotaExceeded) as info:
        await limiter.areserve(carol, rid(), 1, 0)
    assert (info.value.scope, info.value.limit, info.value.current) == ("研发部", 1500, 1500)
    assert held(quota_redis, "u:11") == (0, 0, 0)  # the refused request left nothing on carol's scope


@pytest.mark.asyncio
async def test_rejection_carries_code_limit_current_and_retry_after() -> None:
    at = datetime(2026, 1, 31, 23, 59, 30, tzinfo=SHANGHAI).timestamp()
    scopes = [QuotaScope("u:1", requests_per_minute=2), QuotaScope("d:1", tokens_per_day=100)]
    for _ in range(2):
        await limiter.areserve(scopes, rid(), 1, 1, now=at)
    with pytest.raises(QuotaExceeded) as info:
        await limiter.areserve(scopes, rid(), 1, 1, now=at)
    exc = info.value
    assert (exc.code, exc.status_code, exc.limit_name, exc.limit, exc.current) == (
        "rate_limited",
        429,
        "requests_per_minute",
        2,
        2,
    )
    assert exc.retry_after_seconds == 30 and exc.headers == {"Retry-After": "30"}
    assert exc.details["retry_after_seconds"] == 30 and exc.details["scope"] == "u:1"


@pytest.mark.asyncio
async def test_retry_after_for_day_is_until_local_midnight() -> None:
    at = datetime(2026, 3, 10, 22, 0, 0, tzinfo=SHANGHAI).timestamp()
    scopes = [QuotaScope("d:1", tokens_per_day=100)]
    await limiter.asettle(await limiter.areserve(scopes, rid(), 60, 0, now=at), 60, 0, now=at)
    with pytest.raises(QuotaExceeded) as info:
        await limiter.areserve(scopes, rid(), 20, 30, now=at)
    assert info.value.retry_after_seconds == 2 * 3600 and info.value.current == 60
    # After local midnight (16:00 UTC) the day budget is fresh.
    await limiter.areserve(scopes, rid(), 20, 30, now=at + 2 * 3600)


@pytest.mark.asyncio
async def test_blocked_only_by_requests_in_flight_retries_after_one_second() -> None:
    scopes = [QuotaScope("d:1", tokens_per_day=1000)]
    await limiter.areserve(scopes, rid(), 100, 800)
    with pytest.raises(QuotaExceeded) as info:
        await limiter.areserve(scopes, rid(), 100, 100)
    assert info.value.retry_after_seconds == 1 and info.value.current == 900


@pytest.mark.asyncio
async def test_concurrency_rejection_retries_after_one_second() -> None:
    scopes = [QuotaScope("d:1", concurrent_requests=1)]
    await limiter.areserve(scopes, rid(), 1, 1)
    with pytest.raises(QuotaExceeded) as info:
        await limiter.areserve(scopes, rid(), 1, 1)
    assert info.value.retry_after_seconds == 1 and info.value.code == "too_many_concurrent_requests"


@pytest.mark.asyncio
async def test_max_tokens_per_request_is_refused_before_redis(redis_down: None) -> None:
    scopes = [QuotaScope("u:1"), QuotaScope("d:1", max_tokens_per_request=2048)]
    assert limiter.max_tokens_cap(scopes) == 2048
    with pytest.raises(QuotaExceeded) as info:
        await limiter.areserve(scopes, rid(), 10, 4096)
    assert info.value.status_code == 400 and info.value.code == "max_tokens_exceeded"
    assert info.value.retry_after_seconds is None and info.value.headers == {}


@pytest.mark.asyncio
async def test_zero_budget_refuses_everything() -> None:
    with pytest.raises(QuotaExceeded):
        await limiter.areserve([QuotaScope("d:1", tokens_per_day=0)], rid(), 1, 0)


@pytest.mark.asyncio
async def test_duplicate_request_id_is_a_programming_error() -> None:
    scopes = [QuotaScope("d:1")]
    await limiter.areserve(scopes, "same", 1, 1)
    with pytest.raises(ValueError, match="already holds"):
        await limiter.areserve(scopes, "same", 1, 1)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("scopes", "request_id", "prompt", "max_tokens", "ttl"),
    [
        ([], "r", 1, 1, 10),
        ([QuotaScope("d:1")], "", 1, 1, 10),
        ([QuotaScope("d:1")], "r", -1, 1, 10),
        ([QuotaScope("d:1")], "r", 1, 1, 0),
        ([QuotaScope("d:1")], "r", 1, 1, 10**6),
        ([QuotaScope("d:1"), QuotaScope("d:1")], "r", 1, 1, 10),
    ],
)
async def test_bad_reserve_arguments(
    scopes: list[QuotaScope], request_id: str, prompt: int, max_tokens: int, ttl: int
) -> None:
    with pytest.raises(ValueError):
        await limiter.areserve(scopes, request_id, prompt, max_tokens, ttl)


@pytest.mark.asyncio
async def test_current_usage_reports_what_is_used_and_held() -> None:
    scopes = [QuotaScope("u:1"), QuotaScope("d:1", tokens_per_day=10_000)]
    await limiter.asettle(await limiter.areserve(scopes, rid(), 10, 90), 10, 20)
    await limiter.areserve(scopes, rid(), 100, 100)
    usage = limiter.current_usage(scopes)
    assert usage is not None
    assert (usage[1].tokens_today, usage[1].tokens_in_flight, usage[1].requests_in_flight) == (30, 200, 1)
    assert usage[1].requests_this_minute == 2


# --- Redis unreachable ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_redis_down_fails_closed_by_default_and_is_counted(redis_down: None, caplog: Any) -> None:
    before = limiter.redis_failure_counts().get("reserve.fail_closed", 0)
    with pytest.raises(QuotaUnavailable) as info:
        await limiter.areserve([QuotaScope("d:1", tokens_per_day=10)], rid(), 1, 1)
    assert info.value.status_code == 503 and info.value.code == "quota_unavailable"
    assert limiter.redis_failure_counts()["reserve.fail_closed"] == before + 1
    assert "quota redis unreachable during reserve.fail_closed" in caplog.text


@pytest.mark.asyncio
async def test_redis_down_fail_open_admits_degraded_and_is_counted(
    redis_down: None, settings: Any, caplog: Any
) -> None:
    settings.APPLIANCE_QUOTA_FAIL_OPEN = True
    before = limiter.redis_failure_counts()
    reservation = await limiter.areserve([QuotaScope("d:1", tokens_per_day=10)], rid(), 1, 1)
    assert reservation.degraded
    assert await limiter.asettle(reservation, 1, 1) == SettleOutcome.UNAVAILABLE
    after = limiter.redis_failure_counts()
    assert after["reserve.fail_open"] == before.get("reserve.fail_open", 0) + 1
    assert after["settle"] == before.get("settle", 0) + 1
    assert "reserve.fail_open" in caplog.text
    assert limiter.current_usage([QuotaScope("d:1")]) is None


@pytest.mark.asyncio
async def test_redis_down_async_fails_closed(redis_down: None) -> None:
    with pytest.raises(QuotaUnavailable):
        await limiter.areserve([QuotaScope("d:1")], rid(), 1, 1)
    await limiter.aclose()

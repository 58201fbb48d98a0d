"""Metering for callers (chat portal, OpenAI gateway): admit, measure, settle, record.

Callers (all asynchronous)::

    async with metered(scopes, meta, request_id=rid, prompt_tokens=n, max_tokens=m) as guard:
        ...                        # guard.first_token(), guard.add_completion_tokens(k), await guard.atouch()

A streaming gateway admits before the response starts (so a rejection is a plain 429) and
settles inside the body's generator, which Django closes on client disconnect::

    guard = await abegin(...)                 # QuotaExceeded -> 429, QuotaUnavailable -> 503
    async def body():
        async with guard:                     # cancelled / error / ok, settled exactly once
            async for chunk in upstream: ...

Every ending writes one usage record: queued on a Redis list in the same Lua script that
charges the counters, drained to the database in batches (see ``drain.py``). If Redis is
unreachable the record is written to the database directly, so it is not lost either.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

import redis
from asgiref.sync import sync_to_async

from appliance.core.context import current
from appliance.monitoring import instruments
from appliance.quotas import limiter
from appliance.quotas.choices import QUOTA_UNAVAILABLE_CODE, UsageStatus
from appliance.quotas.limiter import QuotaExceeded, QuotaScope, QuotaUnavailable, Reservation, SettleOutcome
from appliance.quotas.windows import usage_keys, windows_at

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestMeta:
    """Who made a request and what it went to; copied into its usage record."""

    user_id: int | None
    department_id: int | None
    api_key_id: int | None = None
    deployment_id: int | None = None
    model: str = ""


def usage_record(
    meta: RequestMeta,
    request_id: str,
    *,
    status: str,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    latency_ms: int | None = None,
    ttft_ms: int | None = None,
    now: float | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """A usage record as queued for the drain; ``day`` is the local day the quota counters charge."""
    moment = time.time() if now is None else now
    return {
        "uid": uuid.uuid4().hex,
        "request_id": request_id[:64],
        **asdict(meta),
        "model": meta.model[:128],
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_ms": latency_ms,
        "ttft_ms": ttft_ms,
        "status": status,
        "reason": reason,
        "created_at": moment,
        "day": windows_at(moment).day.isoformat(),
    }


def write_directly(records: list[dict[str, Any]]) -> None:
    """The fallback when Redis is down: store the records now, in this process."""
    from appliance.quotas.drain import store_records

    try:
        store_records(records)
    except Exception:
        logger.exception("usage records lost: Redis and the database both failed: %s", records)


async def aqueue_record(record: dict[str, Any]) -> None:
    """Queue a record that charges no quota (a rejection) for the drain."""
    try:
        await limiter.async_scripts().client.lpush(usage_keys()["pending"], json.dumps(record))
    except redis.RedisError as exc:
        limiter.note_redis_failure("usage.queue", exc)
        await sync_to_async(write_directly)([record])


def _status_for(exc_type: type[BaseException] | None, chosen: str | None) -> str:
    if exc_type is None:
        return chosen or UsageStatus.OK
    if issubclass(exc_type, asyncio.CancelledError | GeneratorExit | KeyboardInterrupt):
        return UsageStatus.CANCELLED
    return UsageStatus.ERROR


class Guard:
    """One admitted request. Settles exactly once, whatever way the request ends."""

    def __init__(self, reservation: Reservation, meta: RequestMeta, prompt_tokens: int, ttl: int) -> None:
        self.reservation = reservation
        self.meta = meta
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.status: str | None = None
        self.ttl = ttl
        self.outcome: SettleOutcome | None = None
        self._started = time.monotonic()
        self._extended = self._started
        self._ttft_ms: int | None = None
        self.source = instruments.source_for(current().via)
        instruments.active_streams.labels(self.source).inc()

    @property
    def request_id(self) -> str:
        return self.reservation.request_id

    def first_token(self) -> None:
        """Call when the first token arrives; later calls are ignored."""
        if self._ttft_ms is None:
            self._ttft_ms = self._elapsed_ms()

    def add_completion_tokens(self, count: int) -> None:
        self.completion_tokens += count

    def set_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        """The engine's own count (its final ``usage`` object) replaces the running estimate."""
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens

    def cancel(self) -> None:
        """The user pressed stop: the request ends as ``cancelled`` rather than ``ok``."""
        self.status = UsageStatus.CANCELLED

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    def _due_for_extend(self) -> bool:
        return not self.reservation.degraded and time.monotonic() - self._extended > self.ttl / 2

    async def atouch(self) -> None:
        """Cheap to call per chunk: keeps a long stream's reservation alive past its TTL."""
        if self._due_for_extend():
            self._extended = time.monotonic()
            await limiter.aextend(self.reservation, self.ttl)

    def _record(self, status: str, now: float) -> str:
        record = usage_record(
            self.meta,
            self.request_id,
            status=status,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            latency_ms=self._elapsed_ms(),
            ttft_ms=self._ttft_ms,
            now=now,
        )
        instruments.active_streams.labels(self.source).dec()
        instruments.observe_llm(record, self.source)
        return json.dumps(record)

    async def afinish(self, status: str | None = None) -> SettleOutcome | None:
        """Settle with the counted usage; a second call does nothing and returns None."""
        if self.outcome is not None:
            return None
        now = time.time()
        record = self._record(status or self.status or UsageStatus.OK, now)
        args = (self.reservation, self.prompt_tokens, self.completion_tokens)
        self.outcome = SettleOutcome.SETTLED  # claimed now, so a concurrent afinish cannot settle twice
        # Shielded: a second cancellation of the caller must not interrupt the settle itself.
        self.outcome = await asyncio.shield(limiter.asettle(*args, record=record, now=now))
        if self.outcome == SettleOutcome.UNAVAILABLE:
            await sync_to_async(write_directly)([json.loads(record)])
        return self.outcome

    async def __aenter__(self) -> Guard:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.afinish(_status_for(exc_type, self.status))


def _rejected(
    meta: RequestMeta, request_id: str, prompt_tokens: int, exc: QuotaExceeded | QuotaUnavailable
) -> dict[str, Any]:
    reason = exc.limit_name if isinstance(exc, QuotaExceeded) else QUOTA_UNAVAILABLE_CODE
    record = usage_record(meta, request_id, status=UsageStatus.REJECTED, prompt_tokens=prompt_tokens, reason=reason)
    instruments.observe_refusal(exc.limit_name if isinstance(exc, QuotaExceeded) else "unavailable")
    instruments.observe_llm(record, instruments.source_for(current().via))
    return record


async def abegin(
    scopes: list[QuotaScope],
    meta: RequestMeta,
    *,
    request_id: str,
    prompt_tokens: int,
    max_tokens: int,
    ttl: int | None = None,
    sequences: int = 1,
) -> Guard:
    """Admit a request (raises QuotaExceeded or QuotaUnavailable, recording the rejection)."""
    from django.conf import settings

    ttl = ttl or settings.APPLIANCE_QUOTA_RESERVATION_TTL_SECONDS
    try:
        reservation = await limiter.areserve(scopes, request_id, prompt_tokens, max_tokens, ttl, sequences=sequences)
    except (QuotaExceeded, QuotaUnavailable) as exc:
        await aqueue_record(_rejected(meta, request_id, prompt_tokens, exc))
        raise
    return Guard(reservation, meta, prompt_tokens, ttl)


@asynccontextmanager
async def metered(
    scopes: list[QuotaScope],
    meta: RequestMeta,
    *,
    request_id: str,
    prompt_tokens: int,
    max_tokens: int,
    ttl: int | None = None,
) -> AsyncIterator[Guard]:
    """``async with metered(...) as guard``: admit, then settle on every ending of the block."""
    guard = await abegin(
        scopes, meta, request_id=request_id, prompt_tokens=prompt_tokens, max_tokens=max_tokens, ttl=ttl
    )
    async with guard:
        yield guard

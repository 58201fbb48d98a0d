"""Moving queued usage records from Redis into the database in batches.

Records wait on ``usage:pending`` (newest on the left). A drain moves a batch atomically onto
``usage:processing``, inserts it with ``bulk_create``, then clears ``processing``. A database
error puts the batch back at the old end of ``pending``; a drain that died mid-batch left its
records in ``processing`` and the next drain puts them back first. A batch retried after its
insert had committed (death between commit and clear) is not stored twice: each record's ``uid``
is unique and the insert skips uids already present.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction

from appliance.accounts.models import ApiKey, Department, User
from appliance.quotas import limiter
from appliance.quotas.choices import UsageStatus
from appliance.quotas.models import UsageRecord
from appliance.quotas.windows import usage_keys

logger = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 120
MAX_BATCHES_PER_RUN = 50

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _to_model(data: dict[str, Any]) -> UsageRecord:
    return UsageRecord(
        uid=str(data["uid"])[:32],
        request_id=str(data.get("request_id") or "")[:64],
        user_id=data.get("user_id"),
        api_key_id=data.get("api_key_id"),
        department_id=data.get("department_id"),
        deployment_id=data.get("deployment_id"),
        model=str(data.get("model") or "")[:128],
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        latency_ms=data.get("latency_ms"),
        ttft_ms=data.get("ttft_ms"),
        latency_count=0 if data.get("latency_ms") is None else 1,
        ttft_count=0 if data.get("ttft_ms") is None else 1,
        status=UsageStatus(data.get("status") or UsageStatus.OK),
        reason=str(data.get("reason") or "")[:32],
        created_at=datetime.fromtimestamp(float(data["created_at"]), tz=UTC),
        day=date.fromisoformat(data["day"]),
    )


def _null_missing(records: list[UsageRecord]) -> None:
    """A user, key or department deleted since the request keeps its record, unlinked."""
    for field, model in (("user_id", User), ("api_key_id", ApiKey), ("department_id", Department)):
        ids = {getattr(r, field) for r in records} - {None}
        present = set(model._default_manager.filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()
        for record in records:
            if getattr(record, field) not in present:
                setattr(record, field, None)


def store_records(rows: list[dict[str, Any]]) -> int:
    """Insert parsed records; uids already stored are skipped. Returns how many rows were given."""
    records = [_to_model(row) for row in rows]
    if not records:
        return 0
    with transaction.atomic():
        _null_missing(records)
        UsageRecord.objects.bulk_create(records, ignore_conflicts=True)
    return len(records)


def _parse(raw: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    good, bad = [], []
    for item in raw:
        try:
            data = json.loads(item)
            _to_model(data)
            good.append(data)
        except (ValueError, KeyError, TypeError):
            bad.append(item)
    return good, bad


def _write_batch(scripts: Any, keys: dict[str, str], raw: list[str]) -> int:
    good, bad = _parse(raw)
    if bad:
        logger.error("%d unreadable usage records moved to %s", len(bad), keys["dead"])
        scripts.client.lpush(keys["dead"], *bad)
    try:
        stored = store_records(good)
    except DatabaseError:
        returned = scripts.return_batch(keys=[keys["processing"], keys["pending"]])
        logger.exception("usage drain: database write failed; %d records back on the queue", returned)
        raise
    scripts.client.delete(keys["processing"])
    return stored


def _drain_locked(scripts: Any, keys: dict[str, str], batch_size: int, max_batches: int) -> int:
    # Records left in processing belong to a drain that died; put them back to be taken first.
    scripts.return_batch(keys=[keys["processing"], keys["pending"]])
    written = 0
    for _ in range(max_batches):
        raw = scripts.move_batch(keys=[keys["pending"], keys["processing"]], args=[batch_size])
        if not raw:
            break
        written += _write_batch(scripts, keys, raw)
    return written


def drain(batch_size: int | None = None, max_batches: int = MAX_BATCHES_PER_RUN) -> int:
    """Store queued usage records; returns how many were written. One drain runs at a time.

    Raises the database error after putting the failed batch back, so the task shows it failed.
    """
    scripts, keys = limiter.scripts(), usage_keys()
    size = batch_size or settings.APPLIANCE_USAGE_DRAIN_BATCH_SIZE
    token = uuid.uuid4().hex
    if not scripts.client.set(keys["lock"], token, nx=True, ex=LOCK_TTL_SECONDS):
        return 0  # another drain is running; it takes these records
    try:
        return _drain_locked(scripts, keys, size, max_batches)
    finally:
        scripts.client.eval(_RELEASE_LOCK, 1, keys["lock"], token)


def pending_count() -> int:
    keys = usage_keys()
    client = limiter.scripts().client
    return int(client.llen(keys["pending"])) + int(client.llen(keys["processing"]))

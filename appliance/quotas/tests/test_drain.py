"""The usage drain: batches into the database, loses and duplicates nothing when things fail."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
import redis
from django.conf import settings
from django.db import OperationalError

from appliance.accounts.models import User
from appliance.quotas import limiter
from appliance.quotas.drain import drain, pending_count, store_records
from appliance.quotas.models import UsageRecord
from appliance.quotas.usage import RequestMeta, usage_record
from appliance.quotas.windows import usage_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueue(quota_redis: redis.Redis, personas: dict[str, User]) -> Callable[[int], list[str]]:
    """Queue ``n`` usage records of bob and carol as settle would; returns their uids in order."""

    def push(n: int) -> list[str]:
        uids = []
        for i in range(n):
            user = personas["bob" if i % 2 else "carol"]
            meta = RequestMeta(user_id=user.pk, department_id=user.department_id, model="r1-7b")
            record = usage_record(meta, f"req-{i}", status="ok", prompt_tokens=i, completion_tokens=1)
            quota_redis.lpush(usage_keys()["pending"], json.dumps(record))
            uids.append(record["uid"])
        return uids

    return push


def stored_uids() -> list[str]:
    return list(UsageRecord.objects.order_by("id").values_list("uid", flat=True))


def failing_on_call(number: int) -> Any:
    """A bulk_create that raises a database error on its ``number``-th call."""
    real = UsageRecord.objects.bulk_create
    calls = {"n": 0}

    def bulk_create(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == number:
            raise OperationalError(2006, "MySQL server has gone away")
        return real(*args, **kwargs)

    return mock.patch.object(UsageRecord.objects, "bulk_create", side_effect=bulk_create)


def test_drain_writes_in_batches_oldest_first(enqueue: Callable[[int], list[str]]) -> None:
    uids = enqueue(1234)
    with mock.patch.object(UsageRecord.objects, "bulk_create", wraps=UsageRecord.objects.bulk_create) as spy:
        assert drain(batch_size=100) == 1234
    assert spy.call_count == 13
    assert stored_uids() == uids and pending_count() == 0
    assert sum(UsageRecord.objects.values_list("prompt_tokens", flat=True)) == sum(range(1234))


def test_database_failure_mid_run_loses_and_duplicates_nothing(
    enqueue: Callable[[int], list[str]], quota_redis: redis.Redis
) -> None:
    uids = enqueue(1000)
    with failing_on_call(3), pytest.raises(OperationalError):
        drain(batch_size=100)
    assert len(stored_uids()) == 200
    assert quota_redis.llen(usage_keys()["processing"]) == 0 and pending_count() == 800
    assert drain(batch_size=100) == 800
    assert stored_uids() == uids  # every record once, still in order


def test_a_drain_that_died_mid_batch_is_recovered_by_the_next(
    enqueue: Callable[[int], list[str]], quota_redis: redis.Redis
) -> None:
    uids = enqueue(300)
    keys = usage_keys()
    taken = limiter.scripts().move_batch(keys=[keys["pending"], keys["processing"]], args=[120])
    assert len(taken) == 120  # ... and then the worker was killed
    assert drain(batch_size=50) == 300
    assert stored_uids() == uids and pending_count() == 0


def test_death_between_commit_and_clearing_the_batch_does_not_duplicate(
    enqueue: Callable[[int], list[str]],
) -> None:
    uids = enqueue(80)
    keys = usage_keys()
    taken = limiter.scripts().move_batch(keys=[keys["pending"], keys["processing"]], args=[50])
    store_records([json.loads(item) for item in taken])  # committed; processing never cleared
    drain()
    assert sorted(stored_uids()) == sorted(uids) and len(stored_uids()) == 80


def test_unreadable_records_are_set_aside(enqueue: Callable[[int], list[str]], quota_redis: redis.Redis) -> None:
    enqueue(3)
    quota_redis.lpush(usage_keys()["pending"], "not json", json.dumps({"uid": "x"}))
    assert drain() == 3
    assert quota_redis.llen(usage_keys()["dead"]) == 2 and pending_count() == 0


def test_records_of_deleted_users_are_kept_unlinked(quota_redis: redis.Redis) -> None:
    meta = RequestMeta(user_id=987654, department_id=876543, api_key_id=765432, model="m")
    quota_redis.lpush(usage_keys()["pending"], json.dumps(usage_record(meta, "gone", status="ok")))
    assert drain() == 1
    record = UsageRecord.objects.get(request_id="gone")
    assert (record.user_id, record.department_id, record.api_key_id) == (None, None, None)


def test_one_drain_at_a_time(enqueue: Callable[[int], list[str]], quota_redis: redis.Redis) -> None:
    enqueue(5)
    quota_redis.set(usage_keys()["lock"], "someone-else", ex=60)
    assert drain() == 0 and pending_count() == 5
    quota_redis.delete(usage_keys()["lock"])
    assert drain() == 5


def test_celery_finds_the_task_and_beat_runs_it_every_two_seconds(enqueue: Callable[[int], list[str]]) -> None:
    from workers.celery import app

    app.loader.import_default_modules()
    assert "usage.drain" in app.tasks
    entry = settings.CELERY_BEAT_SCHEDULE["usage.drain"]
    assert entry["task"] == "usage.drain" and entry["schedule"] == 2.0
    enqueue(7)
    assert app.tasks["usage.drain"].apply().get() == 7


def test_worker_shutdown_drains_the_queue(enqueue: Callable[[int], list[str]]) -> None:
    from celery.signals import worker_shutting_down

    import appliance.quotas.tasks  # noqa: F401  (connects the signal handler)

    enqueue(4)
    worker_shutting_down.send(sender="test-worker", sig="SIGTERM", how="Warm", exitcode=0)
    assert UsageRecord.objects.count() == 4 and pending_count() == 0

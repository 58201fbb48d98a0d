"""Usage drain: queued usage records (Redis) into the database, every few seconds and at shutdown."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_shutting_down

from appliance.quotas.drain import drain
from appliance.quotas.retention import apply_retention

log = logging.getLogger(__name__)


@shared_task(name="usage.drain", ignore_result=True)
def drain_usage() -> int:
    """Run by beat (``usage.drain`` in CELERY_BEAT_SCHEDULE). Idempotent; one drain at a time."""
    return drain()


@worker_shutting_down.connect
def _drain_on_shutdown(**_: Any) -> None:
    # Records are safe in Redis either way; draining now just leaves the queue empty behind us.
    try:
        written = drain()
    except Exception:
        log.exception("usage drain at worker shutdown failed; records stay queued")
    else:
        log.info("usage drain at worker shutdown wrote %d records", written)


@shared_task(name="usage.retention", ignore_result=True)
def usage_retention() -> int:
    """Run daily by beat (``usage.retention``): old raw rows into hourly rows, old hourly rows into daily rows."""
    hourly, daily = apply_retention()
    log.info("usage retention: %s; %s", hourly, daily)
    return hourly.rows_in + daily.rows_in

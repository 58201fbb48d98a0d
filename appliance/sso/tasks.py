"""The directory sync, run by beat (``sso.sync-directory`` in CELERY_BEAT_SCHEDULE) when LDAP is on."""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(name="sso.sync_directory", ignore_result=True)
def sync_directory() -> int:
    """Idempotent: a second run finds nothing more to deactivate. Returns how many users it deactivated."""
    from appliance.sso.ldap import sync_directory as run

    result = run()
    log.info("directory sync: %d users checked, %d deactivated", result.checked, result.deactivated)
    return result.deactivated

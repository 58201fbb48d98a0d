"""Scheduled backups with retention (beat entry ``operations.backup``)."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task
from django.conf import settings

from appliance.operations.backup import create_backup, prune

logger = logging.getLogger(__name__)


@shared_task(name="operations.backup", ignore_result=True)
def scheduled_backup() -> str:
    """Write one archive, then keep the newest APPLIANCE_BACKUP_KEEP. A second run writes a second archive."""
    directory = Path(settings.APPLIANCE_BACKUP_DIR)
    result = create_backup(directory)
    for old in prune(directory, settings.APPLIANCE_BACKUP_KEEP):
        logger.info("backup retention: deleted %s", old.name)
    logger.info("backup written: %s", result.path)
    return str(result.path)

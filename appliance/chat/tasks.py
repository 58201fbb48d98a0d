"""Chat upkeep: answers whose web process died are stored as interrupted, with the text they had."""

from __future__ import annotations

from celery import shared_task

from appliance.chat.answers import recover_orphans


@shared_task(name="chat.recover_orphans", ignore_result=True)
def recover_orphaned_answers() -> int:
    return recover_orphans()

"""Audit anchoring: the signed head of the audit chain, exported outside the database."""

from __future__ import annotations

from celery import shared_task

from appliance.audit.archive import archive_old_records
from appliance.audit.services import export_anchor


@shared_task(name="audit.export_anchor", ignore_result=True)
def export_audit_anchor() -> int:
    """Run by beat (``audit.export-anchor``). Idempotent: exporting the same head twice repeats a line."""
    exported = export_anchor()
    return exported.seq if exported is not None else 0


@shared_task(name="audit.archive_old", ignore_result=True)
def archive_old_audit_records() -> int:
    """Run daily by beat (``audit.archive-old``) on the host holding APPLIANCE_AUDIT_ARCHIVE_DIR. Idempotent."""
    return archive_old_records().archived

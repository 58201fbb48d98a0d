"""The states of an image import."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ImportState(models.TextChoices):
    """An image import: queued, being loaded by the node's worker, then done or failed."""

    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


IMPORT_ACTIVE_STATES = frozenset({ImportState.PENDING, ImportState.RUNNING})

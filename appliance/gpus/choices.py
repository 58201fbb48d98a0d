"""States, kinds and fixed constants of nodes, GPUs and assignable units."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils.translation import gettext_lazy as _

GIB = 1024**3
NODE_QUEUE_PREFIX = "node."
# What a node stores as its Docker engine version when the engine does not answer.
DOCKER_UNREACHABLE = "unreachable"


class NodeState(models.TextChoices):
    READY = "ready", _("Ready")
    UNREACHABLE = "unreachable", _("Unreachable")
    MAINTENANCE = "maintenance", _("Maintenance")


class PresenceState(models.TextChoices):
    """Whether the last inventory of the node saw the device; missing ones are kept, never deleted."""

    PRESENT = "present", _("Present")
    MISSING = "missing", _("Missing")


class UnitKind(models.TextChoices):
    GPU = "gpu", _("Whole GPU")
    MIG = "mig", _("MIG slice")


class UnitFlag(models.TextChoices):
    """Why a unit needs an admin's attention; set by the inventory, cleared when the unit returns."""

    NONE = "", _("None")
    MISSING_ASSIGNED = "missing_assigned", _("Vanished while in a department's pool")
    MISSING_HELD = "missing_held", _("Vanished while a deployment held it")


class Resolution(models.TextChoices):
    """Metrics history levels: raw samples, then 1-minute and 1-hour averages."""

    RAW = "raw", _("Raw")
    MINUTE = "1m", _("1 minute")
    HOUR = "1h", _("1 hour")


# Seconds covered by one point, and how long points of each level are kept.
RESOLUTION_SECONDS = {Resolution.RAW: 0, Resolution.MINUTE: 60, Resolution.HOUR: 3600}
RETENTION = {
    Resolution.RAW: timedelta(hours=1),
    Resolution.MINUTE: timedelta(days=7),
    Resolution.HOUR: timedelta(days=90),
}


def node_queue(node_name: str) -> str:
    return f"{NODE_QUEUE_PREFIX}{node_name}"

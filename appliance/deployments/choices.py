"""Deployment states and the transitions between them."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class State(models.TextChoices):
    PENDING = "pending", _("Pending")
    SCHEDULED = "scheduled", _("Scheduled")
    CREATING = "creating", _("Creating")
    STARTING = "starting", _("Starting")
    RUNNING = "running", _("Running")
    STOPPING = "stopping", _("Stopping")
    STOPPED = "stopped", _("Stopped")
    FAILED = "failed", _("Failed")
    UNREACHABLE = "unreachable", _("Unreachable")


class Desired(models.TextChoices):
    RUNNING = "running", _("Running")
    STOPPED = "stopped", _("Stopped")
    # An on-demand deployment stopped (or not yet started) for want of use: the next request starts it.
    IDLE = "idle", _("Idle (starts on the next request)")


class Role(models.TextChoices):
    """Mirrors appliance.engines.base.Role: one container, or the Ray head/worker of a multi-node vLLM."""

    SINGLE = "single", _("Single")
    RAY_HEAD = "ray-head", _("Ray head")
    RAY_WORKER = "ray-worker", _("Ray worker")


# States in which a deployment holds GPU units, a port and (maybe) containers.
ACTIVE_STATES = frozenset({State.SCHEDULED, State.CREATING, State.STARTING, State.RUNNING, State.UNREACHABLE})
# States from which start is allowed.
STARTABLE_STATES = frozenset({State.PENDING, State.STOPPED, State.FAILED})
# States of an idle on-demand deployment from which a request starts it (stopping: once stopped).
WAKEABLE_STATES = frozenset({State.PENDING, State.STOPPED, State.STOPPING})
# Bounds of an on-demand deployment's idle timeout, in minutes (a week at most).
IDLE_MINUTES_MIN, IDLE_MINUTES_MAX, IDLE_MINUTES_DEFAULT = 1, 7 * 24 * 60, 30
# States in which a deployment may be deleted.
DELETABLE_STATES = frozenset({State.PENDING, State.STOPPED, State.FAILED})
# States from which stop (and restart, a stop that starts again) is allowed: not stopped or already stopping.
STOPPABLE_STATES = frozenset(State) - {State.PENDING, State.STOPPED, State.STOPPING}

ALLOWED = {
    State.PENDING: {State.SCHEDULED, State.STOPPED, State.FAILED},
    State.SCHEDULED: {State.CREATING, State.STOPPING, State.FAILED, State.STOPPED},
    State.CREATING: {State.STARTING, State.FAILED, State.STOPPING, State.SCHEDULED},
    State.STARTING: {State.RUNNING, State.FAILED, State.STOPPING, State.UNREACHABLE},
    State.RUNNING: {State.FAILED, State.STOPPING, State.UNREACHABLE},
    State.UNREACHABLE: {State.RUNNING, State.FAILED, State.STOPPING},
    State.STOPPING: {State.STOPPED, State.FAILED},
    State.STOPPED: {State.SCHEDULED},
    State.FAILED: {State.SCHEDULED, State.STOPPING, State.STOPPED},
}


class PlacementStrategy(models.TextChoices):
    SPREAD = "spread", _("Spread")
    BINPACK = "binpack", _("Bin-pack")


CONTAINER_LABEL_CONSOLE = "appliance.console"
CONTAINER_LABEL_NODE = "appliance.node"
CONTAINER_LABEL_REPLICA = "appliance.container"

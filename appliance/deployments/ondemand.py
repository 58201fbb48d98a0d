"""On-demand deployments: stopped after ``idle_minutes`` without a request, started by the next one.

``desired`` says which: ``idle`` marks a deployment stopped (or stopping, or never started) for
want of use, which a request may start; ``stopped`` is a person's stop, which no request undoes.

- The idle check (beat, ``deployments.stop_idle``) copies the last use from Redis (``lastuse``)
  and stops what has been idle long enough. It claims each row with a conditional UPDATE
  (running, wanted running, on demand → desired idle), so a person's start or stop, a second beat
  or a request that woke it meanwhile wins, and the stop itself is the ordinary one: containers
  removed by the node's worker, then units and ports released, each step an event and an audit record.
- A request (gateway or chat) for a model whose only deployments are idle calls ``wake``: the
  first of any number of concurrent requests flips ``desired`` from idle to running in one
  conditional UPDATE and schedules the launch; the others match no row and wait with it.
  A deployment still stopping from idleness is started again by ``mark_stopped`` once its
  containers are gone (desired running there means "start again").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from appliance.accounts.models import User
from appliance.deployments import lastuse
from appliance.deployments.choices import WAKEABLE_STATES, Desired, State
from appliance.deployments.launchspec import launch_spec
from appliance.deployments.models import Deployment, Event
from appliance.deployments.states import queue_stops, schedule, transition

logger = logging.getLogger(__name__)


@transaction.atomic
def wake(deployment_id: int, actor: User | None, why: str) -> bool:
    """Start an idle on-demand deployment; True when this call started it, False when it needed no
    start (another request's call did, it runs, or a person stopped it). Raises Conflict when it
    cannot be placed (no free units), leaving it idle for a later request to try again."""
    claimed = Deployment.objects.filter(
        pk=deployment_id, on_demand=True, desired=Desired.IDLE, state__in=WAKEABLE_STATES
    ).update(desired=Desired.RUNNING)
    if not claimed:
        return False
    dep = Deployment.objects.select_for_update().get(pk=deployment_id)
    dep.restart_count, dep.next_restart_at = 0, None
    if dep.state == State.STOPPING:
        dep.save(update_fields=["restart_count", "next_restart_at"])
        Event.objects.create(
            deployment=dep, from_state=dep.state, to_state=dep.state,
            reason=f"{why}; it starts again once its containers are removed",
        )  # fmt: skip
        return True
    dep.instances.all().delete()
    schedule(dep, launch_spec(dep.profile_version), actor, reason=why)
    return True


def wake_for_request(user_id: int, deployment_ids: tuple[int, ...], model: str) -> None:
    """A request of this user for ``model`` found only these idle deployments: start them (once)."""
    user = User.objects.get(pk=user_id)
    for deployment_id in deployment_ids:
        wake(deployment_id, user, f"started on demand: a request for {model} by {user.get_username()}")


@transaction.atomic
def stop_idle(deployment_id: int, idle_for: timedelta) -> bool:
    """Stop a running on-demand deployment found idle; False when something else changed it first."""
    claimed = Deployment.objects.filter(
        pk=deployment_id, on_demand=True, state=State.RUNNING, desired=Desired.RUNNING
    ).update(desired=Desired.IDLE)
    if not claimed:
        return False
    dep = Deployment.objects.select_for_update().get(pk=deployment_id)
    minutes = idle_for.total_seconds() / 60
    transition(dep, State.STOPPING, f"no request for {minutes:.0f} min (on demand): stopping to free its GPUs")
    queue_stops(dep)
    return True


def _last_use(dep: Deployment, recorded: datetime | None) -> datetime:
    """The latest of: the last request, and the moment it became running (a fresh start counts as use)."""
    return max(t for t in (dep.state_changed_at, dep.last_used_at, recorded) if t is not None)


def stop_idle_deployments(now: datetime | None = None) -> list[int]:
    """The beat's idle check: record each running on-demand deployment's last use, stop the idle ones."""
    now = now or timezone.now()
    running = list(
        Deployment.objects.filter(on_demand=True, state=State.RUNNING, desired=Desired.RUNNING).only(
            "pk", "idle_minutes", "state_changed_at", "last_used_at"
        )
    )
    recorded = lastuse.read(dep.pk for dep in running)
    stopped = []
    for dep in running:
        seen = recorded.get(dep.pk)
        if seen is not None and (dep.last_used_at is None or seen > dep.last_used_at):
            # Conditional: an older reading (a slow beat) never moves the time back.
            Deployment.objects.filter(pk=dep.pk).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=seen)).update(
                last_used_at=seen
            )
        idle_for = now - _last_use(dep, seen)
        if idle_for >= timedelta(minutes=dep.idle_minutes) and stop_idle(dep.pk, idle_for):
            logger.info("deployment %s idle for %s: stopping", dep.pk, idle_for)
            stopped.append(dep.pk)
    return stopped


@dataclass(frozen=True)
class Progress:
    """Where the starts a request waits for stand: ``ready`` (one runs), ``failed`` (none can), else starting."""

    ready: bool
    failed: bool
    detail: str


def progress(deployment_ids: list[int]) -> Progress:
    fields = ("state", "desired", "state_reason", "next_restart_at")
    rows = list(Deployment.objects.filter(pk__in=deployment_ids).values_list(*fields))
    if any(row[0] == State.RUNNING for row in rows):
        return Progress(ready=True, failed=False, detail="")
    # Failed with no restart to come, stopped by a person, or deleted: waiting longer is pointless.
    hopeless = [
        reason or state
        for state, desired, reason, restart_at in rows
        if desired == Desired.STOPPED or (state == State.FAILED and restart_at is None)
    ]
    states = ", ".join(sorted({str(row[0]) for row in rows})) or "deleted"
    if len(hopeless) == len(rows):
        return Progress(ready=False, failed=True, detail="; ".join(hopeless)[:500] or states)
    return Progress(ready=False, failed=False, detail=states)

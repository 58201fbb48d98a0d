"""Deployment operations requested by people (API, pages). Each owns its transaction and audits.

The work on a node — creating, watching and stopping containers — happens in that node's Celery
worker (``tasks.py``), decided in :mod:`appliance.deployments.node` and recorded by
:mod:`appliance.deployments.lifecycle`; :mod:`appliance.deployments.states` is the state machine both use.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from appliance.accounts.models import Department, User
from appliance.audit import services as audit
from appliance.core.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied
from appliance.core.querysets import CHANGE, VIEW
from appliance.deployments import placement
from appliance.deployments.choices import (
    ACTIVE_STATES,
    DELETABLE_STATES,
    IDLE_MINUTES_DEFAULT,
    IDLE_MINUTES_MAX,
    IDLE_MINUTES_MIN,
    STARTABLE_STATES,
    Desired,
    Role,
    State,
)
from appliance.deployments.launchspec import latest_version, launch_spec
from appliance.deployments.models import Deployment, Event, snapshot
from appliance.deployments.states import queue_stops, schedule, transition
from appliance.images.catalog import image_for


def _lock(actor: User, deployment_id: int, action: str = CHANGE) -> Deployment:
    dep = Deployment.objects.restrict(actor, action).select_for_update().filter(pk=deployment_id).first()
    if dep is None:
        raise NotFound("Deployment not found.")
    return dep


def _managed_department(actor: User, department_id: int) -> Department:
    dept = actor.managed_departments().filter(pk=department_id).first()
    if dept is None:
        if Department.objects.restrict(actor, VIEW).filter(pk=department_id).exists():
            raise PermissionDenied("Only platform and department admins manage deployments.")
        raise InvalidInput(f"Department {department_id} does not exist or is not yours.", code="invalid_department")
    return dept


@transaction.atomic
def create_deployment(
    actor: User,
    *,
    name: str,
    profile_id: int,
    department_id: int,
    replicas: int = 1,
    start: bool = True,
    max_restarts: int | None = None,
    on_demand: bool = False,
    idle_minutes: int = IDLE_MINUTES_DEFAULT,
) -> Deployment:
    dept = _managed_department(actor, department_id)
    version = latest_version(profile_id)
    spec = launch_spec(version)
    if not 1 <= replicas <= 16:
        raise InvalidInput("replicas: must be between 1 and 16.", code="invalid", details={"replicas": replicas})
    _check_idle_minutes(idle_minutes)
    dep = Deployment(
        name=name,
        department=dept,
        profile_version=version,
        engine=spec.engine,
        model_slug=spec.model_slug,
        served_model_name=spec.served_model_name,
        image=image_for(spec.engine),
        replicas=replicas,
        # On demand and not started now: the first request starts it.
        desired=Desired.RUNNING if start else (Desired.IDLE if on_demand else Desired.STOPPED),
        max_restarts=settings.APPLIANCE_MAX_RESTARTS if max_restarts is None else max_restarts,
        on_demand=on_demand,
        idle_minutes=idle_minutes,
        created_by=actor,
    )
    try:
        with transaction.atomic():
            dep.save()
    except IntegrityError:
        raise Conflict(f"A deployment named {name!r} already exists.", code="duplicate") from None
    Event.objects.create(deployment=dep, to_state=State.PENDING, reason="created")
    audit.record("deployment.create", actor=actor, target=dep, after=snapshot(dep))
    if start:
        schedule(dep, spec, actor)
    return dep


def _check_idle_minutes(idle_minutes: int) -> None:
    if not IDLE_MINUTES_MIN <= idle_minutes <= IDLE_MINUTES_MAX:
        raise InvalidInput(
            f"idle_minutes: must be between {IDLE_MINUTES_MIN} and {IDLE_MINUTES_MAX}.",
            code="invalid",
            details={"idle_minutes": idle_minutes},
        )


@transaction.atomic
def set_on_demand(actor: User, deployment_id: int, *, on_demand: bool, idle_minutes: int) -> Deployment:
    """Mark a deployment on demand (or not) and set its idle timeout; takes effect at the next idle check."""
    _check_idle_minutes(idle_minutes)
    dep = _lock(actor, deployment_id)
    before = snapshot(dep)
    dep.on_demand, dep.idle_minutes = on_demand, idle_minutes
    if not on_demand and dep.desired == Desired.IDLE:
        dep.desired = Desired.STOPPED  # no longer started by requests: it stays stopped until a person starts it
    dep.save(update_fields=["on_demand", "idle_minutes", "desired"])
    audit.record("deployment.on_demand", actor=actor, target=dep, before=before, after=snapshot(dep))
    return dep


@transaction.atomic
def start_deployment(actor: User, deployment_id: int) -> Deployment:
    dep = _lock(actor, deployment_id)
    if dep.state not in STARTABLE_STATES:
        raise Conflict(
            f"Deployment {dep.name} is {dep.state}; only a stopped or failed one can start.", code="invalid_state"
        )
    dep.desired, dep.restart_count, dep.next_restart_at = Desired.RUNNING, 0, None
    dep.instances.all().delete()
    schedule(dep, launch_spec(dep.profile_version), actor, reason="started")
    return dep


@transaction.atomic
def stop_deployment(
    actor: User | None, deployment_id: int, *, reason: str = "stopped by request", restart: bool = False
) -> Deployment:
    dep = (
        _lock(actor, deployment_id)
        if actor is not None
        else Deployment.objects.select_for_update().get(pk=deployment_id)
    )
    if dep.state in (State.STOPPED, State.PENDING):
        if dep.desired == Desired.IDLE:  # idle on demand: the stop keeps requests from starting it
            _hold_stopped(dep, actor, reason)
            return dep
        raise Conflict(f"Deployment {dep.name} is already {dep.state}.", code="already_stopped")
    before = snapshot(dep)
    dep.desired = Desired.RUNNING if restart else Desired.STOPPED
    dep.next_restart_at = None
    if dep.state == State.STOPPING:
        # No state change, but the request changes what happens once stopped (restart or not): keep and audit it.
        dep.save(update_fields=["desired", "next_restart_at"])
        action = "deployment.restart_requested" if restart else "deployment.stop_requested"
        after = {**snapshot(dep), "reason": reason[:500]}
        audit.record(action, actor=actor, target=dep, department_id=dep.department_id, before=before, after=after)
        return dep
    if not dep.instances.exists():
        transition(dep, State.STOPPED, reason, actor)
        placement.release(dep.pk)
        return dep
    transition(dep, State.STOPPING, reason, actor)
    queue_stops(dep)
    return dep


def _hold_stopped(dep: Deployment, actor: User | None, reason: str) -> None:
    before = snapshot(dep)
    dep.desired = Desired.STOPPED
    dep.save(update_fields=["desired"])
    why = f"{reason}; requests no longer start it"
    Event.objects.create(deployment=dep, from_state=dep.state, to_state=dep.state, reason=why)
    audit.record("deployment.stopped", actor=actor, target=dep, before=before, after={**snapshot(dep), "reason": why})


def restart_deployment(actor: User, deployment_id: int) -> Deployment:
    return stop_deployment(actor, deployment_id, reason="restart requested", restart=True)


@transaction.atomic
def delete_deployment(actor: User, deployment_id: int) -> None:
    dep = _lock(actor, deployment_id)
    if dep.state not in DELETABLE_STATES or dep.instances.filter(state__in=ACTIVE_STATES).exists():
        raise Conflict(f"Deployment {dep.name} is {dep.state}; stop it before deleting.", code="invalid_state")
    placement.release(dep.pk)
    audit.record("deployment.delete", actor=actor, target=dep, before=snapshot(dep))
    dep.delete()


def describe(dep: Deployment) -> dict[str, Any]:
    """Endpoint and units of a deployment, for its detail page and API."""
    instances = list(dep.instances.select_related("node"))
    return {
        "endpoints": [i.base_url for i in instances if i.host_port and i.role != Role.RAY_WORKER],
        "gpu_uuids": [u for i in instances for u in i.gpu_uuids],
        "nodes": sorted({i.node.name for i in instances}),
    }


def stop_for_forced_release(actor: User, claims: list[Any]) -> None:
    """A platform admin force-released units: stop the deployments holding them first."""
    for deployment_id in sorted({claim.deployment_id for claim in claims}):
        try:
            stop_deployment(actor, deployment_id, reason="its GPU units were force-released")
        except (Conflict, NotFound):
            continue  # already stopping or stopped: its claims go with the release

"""State changes made by node workers as containers are created, become healthy, die or stop.

Every function takes ids, re-reads rows under lock and is safe to run twice: a re-delivered task
finds the row already moved on and does nothing.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from appliance.core.tasks import queue_on_commit
from appliance.deployments import placement
from appliance.deployments.choices import ACTIVE_STATES, Desired, Role, State
from appliance.deployments.launchspec import launch_spec
from appliance.deployments.models import Deployment, Event, Instance, PortLease
from appliance.deployments.states import LAUNCH, queue_stops, schedule, transition
from appliance.engines.prompt import TemplateCost
from appliance.gpus.choices import node_queue


def backoff_seconds(failures: int) -> int:
    """Delay before restart number ``failures`` (1-based): 10 s, 20 s, 40 s … capped at 300 s."""
    return int(min(10 * 2 ** (failures - 1), 300))


@transaction.atomic
def move_port(instance_id: int, busy_port: int) -> int:
    """Give the instance the next free leased port, skipping one found busy on the host."""
    inst = Instance.objects.select_for_update().select_related("node").get(pk=instance_id)
    PortLease.objects.filter(instance=inst).delete()
    inst.host_port = placement.lease_port(inst, exclude=frozenset({busy_port}))
    inst.save(update_fields=["host_port"])
    Event.objects.create(
        deployment_id=inst.deployment_id,
        from_state=State.CREATING,
        to_state=State.CREATING,
        reason=f"host port {busy_port} is in use on {inst.node.name}; using {inst.host_port}",
    )
    return inst.host_port


def claim_for_launch(instance_id: int) -> Instance | None:
    """Atomically take a scheduled instance; None when another delivery or a stop got there first."""
    now = timezone.now()
    with transaction.atomic():
        if not Instance.objects.filter(pk=instance_id, state=State.SCHEDULED).update(
            state=State.CREATING, claimed_at=now
        ):
            return None
        inst = Instance.objects.select_related("deployment", "node").get(pk=instance_id)
        dep = Deployment.objects.select_for_update().get(pk=inst.deployment_id)
        if dep.state == State.SCHEDULED:
            transition(dep, State.CREATING, f"creating container {inst.container_name} on {inst.node.name}")
    return inst


@transaction.atomic
def mark_started(instance_id: int, container_id: str, *, adopted: bool = False) -> Instance | None:
    """The instance's container runs; `adopted` when an earlier launch made it and died before saying so."""
    inst = Instance.objects.select_for_update().select_related("node").filter(pk=instance_id).first()
    if inst is None or inst.state not in (State.CREATING, State.SCHEDULED):
        return None
    if adopted:
        Event.objects.create(
            deployment_id=inst.deployment_id,
            from_state=State.CREATING,
            to_state=State.CREATING,
            reason=f"adopted container {inst.container_name} ({container_id[:12]}) on {inst.node.name}, "
            "made by an earlier launch that did not finish",
        )
    inst.state, inst.container_id, inst.started_at = State.STARTING, container_id, timezone.now()
    inst.endpoint_host = settings.APPLIANCE_NODE_ADDRESS
    inst.save(update_fields=["state", "container_id", "started_at", "endpoint_host"])
    dep = Deployment.objects.select_for_update().get(pk=inst.deployment_id)
    if dep.state in (State.SCHEDULED, State.CREATING):
        transition(dep, State.STARTING, "container started; waiting for the engine to load the model")
    _launch_workers_after_head(inst)
    if inst.role == Role.RAY_WORKER:
        _promote(dep, f"Ray worker {inst.container_name} joined on {inst.node.name}")
    return inst


def _launch_workers_after_head(inst: Instance) -> None:
    """Ray workers join a head that runs: they are queued once the head's container started."""
    if inst.role != Role.RAY_HEAD:
        return
    for worker in Instance.objects.filter(
        deployment_id=inst.deployment_id, replica=inst.replica, role=Role.RAY_WORKER
    ).select_related("node"):
        queue_on_commit(LAUNCH, worker.pk, queue=node_queue(worker.node.name))


@transaction.atomic
def mark_healthy(instance_id: int, detail: str, *, template: TemplateCost | None = None) -> None:
    inst = Instance.objects.select_for_update().filter(pk=instance_id, state=State.STARTING).first()
    if inst is None:
        return
    inst.state, inst.health_detail = State.RUNNING, detail[:255]
    if template is not None:
        inst.template_tokens, inst.message_tokens = template.template, template.per_message
    inst.save(update_fields=["state", "health_detail", "template_tokens", "message_tokens"])
    _promote(Deployment.objects.select_for_update().get(pk=inst.deployment_id), detail)


def _promote(dep: Deployment, detail: str) -> None:
    """Ray workers run once their head serves; the deployment runs once every container does."""
    instances = list(dep.instances.select_for_update())
    if any(i.state != State.RUNNING for i in instances if i.role != Role.RAY_WORKER):
        return
    for worker in instances:
        if worker.role == Role.RAY_WORKER and worker.state == State.STARTING:
            worker.state = State.RUNNING
            worker.save(update_fields=["state"])
    if dep.state == State.STARTING and all(i.state == State.RUNNING for i in instances):
        dep.restart_count = 0
        transition(dep, State.RUNNING, detail)


def note_progress(instance_id: int, detail: str, logs: str) -> None:
    Instance.objects.filter(pk=instance_id).update(health_detail=detail[:255], last_logs=logs[-8000:])


def health_checked(instance_id: int) -> None:
    Instance.objects.filter(pk=instance_id).update(health_checked_at=timezone.now())


def claim_lost_health_check(inst: Instance) -> bool:
    """True for the one caller that takes over the probe loop of a starting instance nobody probed for the
    launch grace (its worker died: the loop lives in a chain of countdown tasks on that worker)."""
    if inst.state != State.STARTING or inst.role == Role.RAY_WORKER:
        return False  # a Ray worker is judged through its head
    last = inst.health_checked_at or inst.started_at
    if last is None or last > timezone.now() - timedelta(seconds=settings.APPLIANCE_LAUNCH_GRACE_SECONDS):
        return False
    return bool(
        Instance.objects.filter(pk=inst.pk, state=State.STARTING, health_checked_at=inst.health_checked_at).update(
            health_checked_at=timezone.now()
        )
    )


@transaction.atomic
def mark_failed(instance_id: int, reason: str, *, exit_code: int | None = None, logs: str = "") -> None:
    """An instance failed: the deployment fails, its other containers stop, and a restart is planned."""
    inst = Instance.objects.select_for_update().filter(pk=instance_id).first()
    if inst is None or inst.state in (State.STOPPED, State.FAILED, State.STOPPING):
        return
    inst.state, inst.exit_code = State.FAILED, exit_code
    inst.last_logs = logs[-8000:] or inst.last_logs
    inst.save(update_fields=["state", "exit_code", "last_logs"])
    dep = Deployment.objects.select_for_update().get(pk=inst.deployment_id)
    if dep.state in (State.STOPPING, State.STOPPED, State.FAILED):
        return
    tail = "\n".join(logs.strip().splitlines()[-5:])
    code = f" (exit code {exit_code})" if exit_code is not None else ""
    _plan_restart(dep)
    transition(dep, State.FAILED, f"{reason}{code}" + (f"\n{tail}" if tail else ""))
    queue_stops(dep)


def _plan_restart(dep: Deployment) -> None:
    if dep.desired == Desired.RUNNING and dep.restart_count < dep.max_restarts:
        dep.restart_count += 1
        dep.next_restart_at = timezone.now() + timedelta(seconds=backoff_seconds(dep.restart_count))
    else:
        dep.next_restart_at = None


@transaction.atomic
def mark_stopped(instance_id: int, exit_code: int | None) -> None:
    """A container is gone; when the deployment has none left, its units and ports are released."""
    inst = Instance.objects.select_for_update().filter(pk=instance_id).first()
    if inst is None:
        return
    if inst.state != State.FAILED:
        inst.state = State.STOPPED
    inst.exit_code = exit_code if exit_code is not None else inst.exit_code
    inst.save(update_fields=["state", "exit_code"])
    dep = Deployment.objects.select_for_update().get(pk=inst.deployment_id)
    if dep.instances.filter(state__in=[*ACTIVE_STATES, State.STOPPING]).exists():
        return
    placement.release(dep.pk)
    if dep.state == State.STOPPING:
        transition(dep, State.STOPPED, "all containers stopped and removed; GPU units released")
        if dep.desired == Desired.RUNNING:  # a restart request: start again right away
            dep.instances.all().delete()
            schedule(dep, launch_spec(dep.profile_version), None, reason="restarted")


@transaction.atomic
def restart_due(deployment_id: int) -> bool:
    """Start a failed deployment again once its back-off has passed; False if not due (or not needed)."""
    dep = Deployment.objects.select_for_update().filter(pk=deployment_id).first()
    if dep is None or dep.state != State.FAILED or dep.next_restart_at is None:
        return False
    if dep.next_restart_at > timezone.now() or dep.desired != Desired.RUNNING:
        return False
    if dep.instances.exclude(state__in=[State.STOPPED, State.FAILED]).exists():
        return False  # containers of the failed run are still being removed
    dep.next_restart_at = None
    dep.instances.all().delete()
    placement.release(dep.pk)
    schedule(dep, launch_spec(dep.profile_version), None, reason=f"restart {dep.restart_count}/{dep.max_restarts}")
    return True


def _model_claim_is_free(instance_id: int) -> Q:
    stale = timezone.now() - timedelta(seconds=settings.APPLIANCE_LAUNCH_GRACE_SECONDS)
    return Q(pk=instance_id, state=State.STARTING) & (Q(model_claim="") | Q(model_claimed_at__lt=stale))


def claim_model_creation(instance_id: int) -> str | None:
    """The health check's claim on creating the engine's model: a token to queue the work with, or None
    while another worker visibly holds it (its claim refreshed within the launch grace)."""
    token = uuid.uuid4().hex
    free = Instance.objects.filter(_model_claim_is_free(instance_id))
    return token if free.update(model_claim=token, model_claimed_at=timezone.now()) else None


def start_model_creation(instance_id: int, queued_token: str) -> str | None:
    """The worker's own claim as it starts: swaps the queued token for its own, so a second delivery of the
    same message (or one that arrives after a take-over) finds the token changed and does nothing."""
    mine = uuid.uuid4().hex
    claimed = Instance.objects.filter(pk=instance_id, state=State.STARTING, model_claim=queued_token).update(
        model_claim=mine, model_claimed_at=timezone.now()
    )
    return mine if claimed else None


def model_work_alive(instance_id: int, token: str) -> bool:
    """Refresh the claim; False when the row moved on (stopped, failed) or another worker took the work over."""
    return bool(
        Instance.objects.filter(pk=instance_id, state=State.STARTING, model_claim=token).update(
            model_claimed_at=timezone.now()
        )
    )


def model_event(deployment_id: int, text: str) -> None:
    """A step of the model's creation, shown in the deployment's events (the state stays `starting`)."""
    Event.objects.create(deployment_id=deployment_id, from_state=State.STARTING, to_state=State.STARTING, reason=text)

"""Deployments: a profile version running as one or more engine containers on GPU units.

A deployment has replicas; each replica is one container (single node) or a Ray head and its
workers (multi-node vLLM). Each of those is a :class:`Instance` row, so tasks claim and launch
one container at a time and the reconciler can match every container to exactly one row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from appliance.core.querysets import USE, VIEW, RestrictedQuerySet
from appliance.deployments.choices import (
    DELETABLE_STATES,
    IDLE_MINUTES_DEFAULT,
    IDLE_MINUTES_MAX,
    IDLE_MINUTES_MIN,
    STARTABLE_STATES,
    STOPPABLE_STATES,
    Desired,
    Role,
    State,
)

if TYPE_CHECKING:
    from appliance.accounts.models import User


def _department_scope(user: User, action: str, prefix: str = "") -> models.Q | None:
    """Department admins manage their subtree's deployments; members see their department's."""
    if user.department is None:
        return None
    if user.is_department_admin:
        return models.Q(**{f"{prefix}department__path__startswith": user.department.path})
    if action == VIEW:
        return models.Q(**{f"{prefix}department_id": user.department_id})
    return None


class DeploymentQuerySet(RestrictedQuerySet["Deployment"]):
    pass


class Deployment(models.Model):
    name = models.CharField(max_length=64, unique=True)
    department = models.ForeignKey("accounts.Department", on_delete=models.PROTECT, related_name="deployments")
    profile_version = models.ForeignKey("catalog.ProfileVersion", on_delete=models.PROTECT, related_name="+")
    engine = models.CharField(max_length=16)
    model_slug = models.CharField(max_length=64)
    served_model_name = models.CharField(max_length=128, db_index=True)
    image = models.CharField(max_length=255)
    replicas = models.PositiveSmallIntegerField(default=1)
    desired = models.CharField(max_length=16, choices=Desired.choices, default=Desired.RUNNING)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    state_reason = models.TextField(blank=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    max_restarts = models.PositiveSmallIntegerField(default=3)
    restart_count = models.PositiveSmallIntegerField(default=0)
    next_restart_at = models.DateTimeField(null=True, blank=True)
    # On demand: stopped after ``idle_minutes`` without a request, started again by the next one.
    on_demand = models.BooleanField(default=False)
    idle_minutes = models.PositiveIntegerField(
        default=IDLE_MINUTES_DEFAULT,
        validators=[MinValueValidator(IDLE_MINUTES_MIN), MaxValueValidator(IDLE_MINUTES_MAX)],
    )
    # The last request seen, as the idle check last copied it from Redis (appliance.deployments.lastuse).
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DeploymentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    def allowed_verbs(self) -> frozenset[str]:
        """The operations its state machine allows now, so pages offer only those (services re-check)."""
        verbs = {"start"} if self.state in STARTABLE_STATES else set()
        if self.state in STOPPABLE_STATES:
            verbs |= {"stop", "restart"}
        elif self.state == State.STOPPING:
            # What happens once stopped can still change: a restart asked for, or taken back by a stop.
            verbs.add("restart" if self.desired == Desired.STOPPED else "stop")
        if self.state in DELETABLE_STATES:
            verbs.add("delete")
        return frozenset(verbs)

    @property
    def is_serving(self) -> bool:
        """Whether its endpoint and health mean anything now (a stopped deployment's are stale)."""
        return self.state in (State.RUNNING, State.UNREACHABLE, State.STARTING)

    @staticmethod
    def restrict_scope(qs: DeploymentQuerySet, user: User, action: str) -> DeploymentQuerySet:
        if action == USE:
            return Deployment._use_scope(qs, user)
        scope = _department_scope(user, action)
        return qs.none() if scope is None else qs.filter(scope)

    @staticmethod
    def auditor_scope(qs: DeploymentQuerySet, user: User, action: str) -> DeploymentQuerySet:
        return Deployment._use_scope(qs, user) if action == USE else qs.none()

    @staticmethod
    def _use_scope(qs: DeploymentQuerySet, user: User) -> DeploymentQuerySet:
        """A user may use the deployments of their department and of its parents (a shared model run
        by the IT department for everyone); platform admins, all of them (the gate's part)."""
        if user.department is None:
            return qs.none()
        return qs.filter(department_id__in=user.department.lineage_ids())


class Instance(models.Model):
    """One container of a deployment on one node; ``container_name`` is fixed before it exists."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="instances")
    replica = models.PositiveSmallIntegerField(default=0)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.SINGLE)
    rank = models.PositiveSmallIntegerField(default=0)
    node = models.ForeignKey("gpus.Node", on_delete=models.PROTECT, related_name="instances")
    state = models.CharField(max_length=16, choices=State.choices, default=State.SCHEDULED, db_index=True)
    container_name = models.CharField(max_length=128, unique=True)
    container_id = models.CharField(max_length=80, blank=True)
    host_port = models.PositiveIntegerField(null=True, blank=True)
    endpoint_host = models.CharField(max_length=255, blank=True)
    gpu_uuids = models.JSONField(default=list, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    last_logs = models.TextField(blank=True)
    health_detail = models.CharField(max_length=255, blank=True)
    # The chat template's cost as the engine billed it when it came up (appliance/engines/prompt.py);
    # null until measured, when the gateway and chat reserve the configured allowance instead.
    template_tokens = models.PositiveIntegerField(null=True, blank=True)
    message_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Creating the engine's model through its API (Ollama): who holds the work, and when it last showed
    # life; a claim silent for the launch grace is taken over (see model_setup.py).
    model_claim = models.CharField(max_length=32, blank=True)
    model_claimed_at = models.DateTimeField(null=True, blank=True)
    # The last health probe of a starting instance: the reconciler restarts a probe loop whose worker died.
    health_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["deployment_id", "replica", "rank"]

    def __str__(self) -> str:
        return self.container_name

    @property
    def base_url(self) -> str:
        return f"http://{self.endpoint_host or '127.0.0.1'}:{self.host_port}"


class PortLease(models.Model):
    """A host port taken on a node; the unique pair makes a port clash impossible between rows."""

    node = models.ForeignKey("gpus.Node", on_delete=models.CASCADE, related_name="+")
    port = models.PositiveIntegerField()
    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, related_name="port_lease")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["node", "port"], name="deployments_one_lease_per_port")]

    def __str__(self) -> str:
        return f"{self.node_id}:{self.port}"


class Event(models.Model):
    """A state transition of a deployment, kept for its events list."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.deployment_id}: {self.from_state} → {self.to_state}"


def snapshot(dep: Deployment) -> dict[str, Any]:
    return {
        "name": dep.name,
        "department": dep.department_id,
        "profile_version": dep.profile_version_id,
        "engine": dep.engine,
        "model": dep.model_slug,
        "image": dep.image,
        "replicas": dep.replicas,
        "desired": dep.desired,
        "state": dep.state,
        "on_demand": dep.on_demand,
        "idle_minutes": dep.idle_minutes,
    }

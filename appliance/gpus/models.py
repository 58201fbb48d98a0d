"""Nodes, their GPUs, the assignable units carved from them, quotas and the metrics history.

An *assignable unit* (`GpuUnit`) is a whole GPU while MIG is off, or one MIG slice while it is on.
Pools, quotas and (issue 5) deployments all work on units, so one table and one lock order cover
both cases. A whole-GPU unit shares its GPU's UUID; switching MIG on marks it `missing` and the
slices appear, switching it off does the reverse: the inventory reconciles units by UUID.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from appliance.core.querysets import VIEW, RestrictedQuerySet
from appliance.gpus.choices import GIB, NodeState, PresenceState, Resolution, UnitFlag, UnitKind

if TYPE_CHECKING:
    from appliance.accounts.models import User

node_name_validator = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", _("Use letters, digits, '.', '-' and '_'."))


def pool_filter(user: User, prefix: str = "") -> Q | None:
    """Units a department user may see: their department's pool (a department admin: the subtree)."""
    if user.department_id is None or user.department is None:
        return None
    if user.is_department_admin:
        return Q(**{f"{prefix}department__path__startswith": user.department.path})
    return Q(**{f"{prefix}department_id": user.department_id})


def _visible_unit_ids(user: User) -> models.QuerySet[GpuUnit] | None:
    scope = pool_filter(user)
    return None if scope is None else GpuUnit.objects.filter(scope)


class NodeQuerySet(RestrictedQuerySet["Node"]):
    pass


class Node(models.Model):
    """A server running a console worker that consumes the queue ``node.<name>``."""

    name = models.CharField(max_length=64, unique=True, validators=[node_name_validator])
    hostname = models.CharField(max_length=255, blank=True)
    cpu_model = models.CharField(max_length=255, blank=True)
    cpu_count = models.PositiveIntegerField(null=True, blank=True)
    ram_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    disk_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    os = models.CharField(max_length=255, blank=True)
    driver_version = models.CharField(max_length=64, blank=True)
    cuda_version = models.CharField(max_length=32, blank=True)
    nvml_version = models.CharField(max_length=64, blank=True)
    docker_version = models.CharField(max_length=64, blank=True, help_text="The engine's version or 'unreachable'.")
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.READY, db_index=True)
    maintenance_reason = models.CharField(max_length=255, blank=True)
    simulated = models.BooleanField(default=False, help_text="Its GPUs come from APPLIANCE_SIMULATED_GPUS.")
    registered_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(null=True, blank=True, db_index=True)
    inventory_at = models.DateTimeField(null=True, blank=True)
    # Set by the collection task when it claims the node, so piled-up collections run once.
    inventory_claimed_at = models.DateTimeField(null=True, blank=True)
    inventory_error = models.TextField(blank=True)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def restrict_scope(qs: NodeQuerySet, user: User, action: str) -> NodeQuerySet:
        units = _visible_unit_ids(user)
        if action != VIEW or units is None:
            return qs.none()
        return qs.filter(pk__in=units.values("gpu__node_id"))


class GpuQuerySet(RestrictedQuerySet["Gpu"]):
    pass


class Gpu(models.Model):
    """A physical GPU with its latest readings; keyed by NVML's UUID, never deleted."""

    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="gpus")
    index = models.PositiveSmallIntegerField()
    uuid = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=128, blank=True)
    pci_bus_id = models.CharField(max_length=32, blank=True)
    memory_total = models.PositiveBigIntegerField(null=True, blank=True)
    memory_used = models.BigIntegerField(null=True, blank=True)
    memory_free = models.BigIntegerField(null=True, blank=True)
    memory_reserved = models.BigIntegerField(null=True, blank=True)
    util_gpu = models.PositiveSmallIntegerField(null=True, blank=True)
    util_memory = models.PositiveSmallIntegerField(null=True, blank=True)
    temperature_c = models.SmallIntegerField(null=True, blank=True)
    power_draw_w = models.FloatField(null=True, blank=True)
    power_limit_w = models.FloatField(null=True, blank=True)
    ecc_uncorrected = models.PositiveBigIntegerField(null=True, blank=True)
    ecc_corrected = models.PositiveBigIntegerField(null=True, blank=True)
    compute_capability = models.CharField(max_length=16, blank=True)
    mig_capable = models.BooleanField(default=False)
    mig_mode_current = models.BooleanField(default=False)
    mig_mode_pending = models.BooleanField(default=False)
    processes = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=16, choices=PresenceState.choices, default=PresenceState.PRESENT)
    simulated = models.BooleanField(default=False)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    missing_since = models.DateTimeField(null=True, blank=True)

    objects = GpuQuerySet.as_manager()

    class Meta:
        ordering = ["node__name", "index"]

    def __str__(self) -> str:
        return f"{self.node.name}/GPU{self.index} {self.name}"

    @staticmethod
    def restrict_scope(qs: GpuQuerySet, user: User, action: str) -> GpuQuerySet:
        units = _visible_unit_ids(user)
        if action != VIEW or units is None:
            return qs.none()
        return qs.filter(pk__in=units.values("gpu_id"))


class GpuUnitQuerySet(RestrictedQuerySet["GpuUnit"]):
    def free(self) -> GpuUnitQuerySet:
        return self.filter(state=PresenceState.PRESENT, department__isnull=True)


class GpuUnit(models.Model):
    """An assignable unit (see the module docstring); ``department`` is the pool it belongs to."""

    gpu = models.ForeignKey(Gpu, on_delete=models.PROTECT, related_name="units")
    kind = models.CharField(max_length=8, choices=UnitKind.choices)
    uuid = models.CharField(max_length=64, unique=True)
    profile = models.CharField(max_length=32, blank=True, help_text="MIG profile such as 3g.40gb.")
    memory_total = models.PositiveBigIntegerField(null=True, blank=True)
    memory_used = models.BigIntegerField(null=True, blank=True)
    gi_id = models.PositiveSmallIntegerField(null=True, blank=True)
    ci_id = models.PositiveSmallIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=PresenceState.choices, default=PresenceState.PRESENT)
    simulated = models.BooleanField(default=False)
    department = models.ForeignKey(
        "accounts.Department", null=True, blank=True, on_delete=models.PROTECT, related_name="gpu_units"
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    flag = models.CharField(max_length=32, choices=UnitFlag.choices, default=UnitFlag.NONE, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    missing_since = models.DateTimeField(null=True, blank=True)

    objects = GpuUnitQuerySet.as_manager()

    class Meta:
        ordering = ["gpu__node__name", "gpu__index", "kind", "gi_id", "uuid"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind=UnitKind.MIG) | Q(kind=UnitKind.GPU, profile=""), name="gpus_unit_profile_only_for_mig"
            ),
        ]

    def __str__(self) -> str:
        suffix = f" MIG {self.profile}" if self.kind == UnitKind.MIG else ""
        return f"{self.gpu.node.name}/GPU{self.gpu.index}{suffix}"

    @property
    def memory_gib(self) -> float:
        return (self.memory_total or 0) / GIB

    @staticmethod
    def restrict_scope(qs: GpuUnitQuerySet, user: User, action: str) -> GpuUnitQuerySet:
        scope = pool_filter(user)
        if action != VIEW or scope is None:
            return qs.none()
        return qs.filter(scope)


class UnitClaim(models.Model):
    """A running deployment's hold on a unit. The one-to-one makes "at most one holder" a constraint.

    Issue 5 (deployments) turns ``deployment_id`` into a foreign key to its Deployment.
    """

    unit = models.OneToOneField(GpuUnit, on_delete=models.PROTECT, related_name="claim")
    deployment_id = models.PositiveBigIntegerField(db_index=True)
    claimed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"unit {self.unit_id} held by deployment {self.deployment_id}"


class GpuQuotaQuerySet(RestrictedQuerySet["GpuQuota"]):
    pass


class GpuQuota(models.Model):
    """The most a department's pool may hold; a null limit (or no row) means no limit.

    ``max_containers`` is different: it bounds the engine containers of the department's whole
    subtree, CPU-only ones included (they take no GPU unit, so the pool limits never see them), and
    a null falls back to ``APPLIANCE_DEFAULT_MAX_CONTAINERS`` (see deployments/containers_quota.py).
    """

    department = models.OneToOneField("accounts.Department", on_delete=models.CASCADE, related_name="gpu_quota")
    max_units = models.PositiveIntegerField(null=True, blank=True)
    max_memory_gib = models.PositiveIntegerField(null=True, blank=True)
    max_containers = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GpuQuotaQuerySet.as_manager()

    class Meta:
        ordering = ["department__path"]

    def __str__(self) -> str:
        return f"GPU quota of {self.department}"

    @staticmethod
    def restrict_scope(qs: GpuQuotaQuerySet, user: User, action: str) -> GpuQuotaQuerySet:
        scope = pool_filter(user)
        if action != VIEW or scope is None:
            return qs.none()
        return qs.filter(scope)


class GpuMetric(models.Model):
    """One point of a GPU's history: a raw sample or an average over a minute or an hour."""

    gpu = models.ForeignKey(Gpu, on_delete=models.CASCADE, related_name="metrics")
    resolution = models.CharField(max_length=4, choices=Resolution.choices)
    at = models.DateTimeField()
    samples = models.PositiveIntegerField(default=1)
    memory_used = models.BigIntegerField(null=True, blank=True)
    util_gpu = models.FloatField(null=True, blank=True)
    util_memory = models.FloatField(null=True, blank=True)
    temperature_c = models.FloatField(null=True, blank=True)
    power_draw_w = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["gpu_id", "resolution", "at"]
        constraints = [models.UniqueConstraint(fields=["gpu", "resolution", "at"], name="gpus_metric_one_per_instant")]
        indexes = [models.Index(fields=["resolution", "at"], name="gpus_metric_res_at")]

    def __str__(self) -> str:
        return f"GPU {self.gpu_id} {self.resolution} @ {self.at.isoformat()}"


def audit_snapshot(obj: Any) -> dict[str, Any]:
    """The fields the audit log records for a node, GPU, unit or quota; ``simulated`` always included."""
    if isinstance(obj, Node):
        return {"name": obj.name, "state": obj.state, "simulated": obj.simulated, "hostname": obj.hostname}
    if isinstance(obj, Gpu):
        return {
            "uuid": obj.uuid,
            "node": obj.node_id,
            "index": obj.index,
            "name": obj.name,
            "state": obj.state,
            "simulated": obj.simulated,
        }
    if isinstance(obj, GpuUnit):
        return {
            "uuid": obj.uuid,
            "kind": obj.kind,
            "profile": obj.profile,
            "gpu": obj.gpu_id,
            "state": obj.state,
            "department": obj.department_id,
            "memory_total": obj.memory_total,
            "simulated": obj.simulated,
        }
    if isinstance(obj, GpuQuota):
        return {
            "department": obj.department_id,
            "max_units": obj.max_units,
            "max_memory_gib": obj.max_memory_gib,
            "max_containers": obj.max_containers,
        }
    raise TypeError(f"no audit snapshot for {type(obj).__name__}")

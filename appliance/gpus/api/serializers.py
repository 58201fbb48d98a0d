from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import serializers

from appliance.core.api.serializers import StrictModelSerializer, StrictSerializer
from appliance.gpus.choices import GIB, node_queue
from appliance.gpus.models import Gpu, GpuQuota, GpuUnit, Node


class NodeSerializer(StrictModelSerializer):
    gpu_count = serializers.IntegerField(read_only=True)
    queue = serializers.SerializerMethodField()

    class Meta:
        model = Node
        fields = [
            "id",
            "name",
            "queue",
            "state",
            "maintenance_reason",
            "simulated",
            "hostname",
            "cpu_model",
            "cpu_count",
            "ram_bytes",
            "disk_bytes",
            "os",
            "driver_version",
            "cuda_version",
            "nvml_version",
            "docker_version",
            "registered_at",
            "last_heartbeat",
            "inventory_at",
            "inventory_error",
            "gpu_count",
        ]
        read_only_fields = fields

    def get_queue(self, node: Node) -> str:
        return node_queue(node.name)


class GpuUnitSerializer(StrictModelSerializer):
    node = serializers.CharField(source="gpu.node.name", read_only=True)
    gpu_index = serializers.IntegerField(source="gpu.index", read_only=True)
    department_name = serializers.CharField(source="department.name", read_only=True, default=None, allow_null=True)
    memory_gib = serializers.FloatField(read_only=True)
    held_by = serializers.SerializerMethodField(help_text="The deployment holding the unit, if any.")

    class Meta:
        model = GpuUnit
        fields = [
            "id",
            "gpu",
            "node",
            "gpu_index",
            "kind",
            "uuid",
            "profile",
            "memory_total",
            "memory_used",
            "memory_gib",
            "state",
            "simulated",
            "department",
            "department_name",
            "assigned_at",
            "held_by",
            "flag",
            "missing_since",
        ]
        read_only_fields = fields

    def get_held_by(self, unit: GpuUnit) -> int | None:
        claim = getattr(unit, "claim", None)
        return claim.deployment_id if claim is not None else None


class GpuSerializer(StrictModelSerializer):
    node_name = serializers.CharField(source="node.name", read_only=True)
    units = GpuUnitSerializer(many=True, read_only=True, source="visible_units")

    class Meta:
        model = Gpu
        fields = [
            "id",
            "node",
            "node_name",
            "index",
            "uuid",
            "name",
            "pci_bus_id",
            "memory_total",
            "memory_used",
            "memory_free",
            "memory_reserved",
            "util_gpu",
            "util_memory",
            "temperature_c",
            "power_draw_w",
            "power_limit_w",
            "ecc_uncorrected",
            "ecc_corrected",
            "compute_capability",
            "mig_capable",
            "mig_mode_current",
            "mig_mode_pending",
            "processes",
            "state",
            "simulated",
            "first_seen",
            "last_seen",
            "missing_since",
            "units",
        ]
        read_only_fields = fields


class GpuQuotaSerializer(StrictModelSerializer):
    department_name = serializers.CharField(source="department.name", read_only=True)
    used_units = serializers.IntegerField(read_only=True)
    used_memory_gib = serializers.SerializerMethodField()
    used_containers = serializers.SerializerMethodField()

    class Meta:
        model = GpuQuota
        fields = [
            *("id", "department", "department_name", "max_units", "max_memory_gib", "max_containers"),
            *("used_units", "used_memory_gib", "used_containers"),
        ]
        read_only_fields = ["id", "department", "department_name", "used_units", "used_memory_gib", "used_containers"]

    def get_used_memory_gib(self, quota: Any) -> float:
        return round((getattr(quota, "used_memory", None) or 0) / GIB, 1)

    def get_used_containers(self, quota: Any) -> int:
        """Engine containers of the department's subtree (CPU-only included) counted by its container limit."""
        from appliance.deployments.container_quota import containers_in_use

        return containers_in_use(quota.department)


_CONTAINERS_HELP = "Engine containers of the department's subtree, CPU-only included; null: the configured default."


# The limits are PositiveIntegerField columns; a larger value would reach the database and fail there.
QUOTA_LIMIT_MAX = 2**31 - 1


class GpuQuotaSetSerializer(StrictSerializer):
    department = serializers.IntegerField()
    max_units = serializers.IntegerField(
        min_value=0, max_value=QUOTA_LIMIT_MAX, allow_null=True, required=False, default=None
    )
    max_memory_gib = serializers.IntegerField(
        min_value=0, max_value=QUOTA_LIMIT_MAX, allow_null=True, required=False, default=None
    )
    max_containers = serializers.IntegerField(
        min_value=0,
        max_value=QUOTA_LIMIT_MAX,
        allow_null=True,
        required=False,
        default=None,
        help_text=_CONTAINERS_HELP,
    )


class GpuQuotaUpdateSerializer(StrictSerializer):
    max_units = serializers.IntegerField(min_value=0, max_value=QUOTA_LIMIT_MAX, allow_null=True, required=False)
    max_memory_gib = serializers.IntegerField(min_value=0, max_value=QUOTA_LIMIT_MAX, allow_null=True, required=False)
    max_containers = serializers.IntegerField(
        min_value=0, max_value=QUOTA_LIMIT_MAX, allow_null=True, required=False, help_text=_CONTAINERS_HELP
    )


class GpuUnitsSerializer(StrictSerializer):
    units = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1, max_length=512)


class GpuAssignSerializer(GpuUnitsSerializer):
    department = serializers.IntegerField()


class GpuReleaseSerializer(GpuUnitsSerializer):
    force = serializers.BooleanField(default=False)


class GpuMoveSerializer(GpuAssignSerializer):
    force = serializers.BooleanField(default=False)


class NodeMaintenanceSerializer(StrictSerializer):
    enabled = serializers.BooleanField()
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class GpuMetricsQuerySerializer(StrictSerializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Before 1970 no GPU reported anything; such a year would also come back with a local-mean-time
        # offset (+08:05:43 in Asia/Shanghai) that is not a valid RFC 3339 date-time.
        for name in ("since", "until"):
            if name in attrs and attrs[name].year < 1970:
                raise serializers.ValidationError({name: [_("Must be 1970 or later.")]})
        return attrs

    step = serializers.IntegerField(required=False, min_value=1, help_text="Seconds per point.")


class GpuMetricsSerializer(serializers.Serializer):
    gpu = serializers.IntegerField()
    resolution = serializers.CharField()
    step = serializers.IntegerField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    points = serializers.ListField(child=serializers.DictField())


class GpuPoolSerializer(serializers.Serializer):
    department = serializers.IntegerField()
    department_name = serializers.CharField()
    units = serializers.IntegerField()
    memory_gib = serializers.FloatField()
    quota_units = serializers.IntegerField(allow_null=True)
    quota_memory_gib = serializers.IntegerField(allow_null=True)


class GpuCapacitySerializer(serializers.Serializer):
    units = serializers.IntegerField()
    memory_gib = serializers.FloatField()


class GpuSummarySerializer(serializers.Serializer):
    total = GpuCapacitySerializer()
    free = GpuCapacitySerializer()
    pools = GpuPoolSerializer(many=True)

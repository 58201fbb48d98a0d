from __future__ import annotations

from typing import Any

from rest_framework import serializers

from appliance.core.api.serializers import StrictSerializer
from appliance.deployments.choices import IDLE_MINUTES_DEFAULT, IDLE_MINUTES_MAX, IDLE_MINUTES_MIN
from appliance.deployments.models import Deployment, Event, Instance
from appliance.deployments.services import describe


class InstanceSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.name")

    class Meta:
        model = Instance
        fields = [
            "id",
            "replica",
            "role",
            "rank",
            "node",
            "state",
            "container_name",
            "container_id",
            "host_port",
            "endpoint_host",
            "gpu_uuids",
            "started_at",
            "exit_code",
            "health_detail",
        ]
        read_only_fields = fields


class DeploymentSerializer(serializers.ModelSerializer):
    department_name = serializers.CharField(source="department.name", read_only=True)
    profile = serializers.IntegerField(source="profile_version.profile_id", read_only=True)
    instances = InstanceSerializer(many=True, read_only=True)
    endpoints = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "name",
            "department",
            "department_name",
            "profile",
            "profile_version",
            "engine",
            "model_slug",
            "served_model_name",
            "image",
            "replicas",
            "desired",
            "state",
            "state_reason",
            "state_changed_at",
            "restart_count",
            "max_restarts",
            "next_restart_at",
            "on_demand",
            "idle_minutes",
            "last_used_at",
            "created_at",
            "instances",
            "endpoints",
        ]
        read_only_fields = fields

    def get_endpoints(self, dep: Deployment) -> list[str]:
        return list(describe(dep)["endpoints"])


class DeploymentCreateSerializer(StrictSerializer):
    name = serializers.RegexField(
        r"^[a-z0-9][a-z0-9-]{0,62}$",
        max_length=63,
        error_messages={"invalid": "Use lower-case letters, digits and '-'."},
    )
    profile = serializers.IntegerField(min_value=1)
    department = serializers.IntegerField(min_value=1)
    replicas = serializers.IntegerField(min_value=1, max_value=16, default=1)
    start = serializers.BooleanField(default=True)
    max_restarts = serializers.IntegerField(min_value=0, max_value=20, required=False)
    on_demand = serializers.BooleanField(default=False)
    idle_minutes = serializers.IntegerField(
        min_value=IDLE_MINUTES_MIN, max_value=IDLE_MINUTES_MAX, default=IDLE_MINUTES_DEFAULT
    )

    def service_kwargs(self) -> dict[str, Any]:
        data = dict(self.validated_data)
        return {
            "name": data["name"],
            "profile_id": data["profile"],
            "department_id": data["department"],
            "replicas": data["replicas"],
            "start": data["start"],
            "on_demand": data["on_demand"],
            "idle_minutes": data["idle_minutes"],
            **({"max_restarts": data["max_restarts"]} if "max_restarts" in data else {}),
        }


class OnDemandSerializer(StrictSerializer):
    on_demand = serializers.BooleanField()
    idle_minutes = serializers.IntegerField(
        min_value=IDLE_MINUTES_MIN, max_value=IDLE_MINUTES_MAX, default=IDLE_MINUTES_DEFAULT
    )


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["id", "at", "from_state", "to_state", "reason"]
        read_only_fields = fields

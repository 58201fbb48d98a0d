from __future__ import annotations

from typing import Any

from rest_framework import serializers

from appliance.core.api.serializers import StrictModelSerializer, StrictSerializer
from appliance.quotas.models import LIMIT_FIELDS, Quota, UsageRecord

# MySQL's unsigned INT and BIGINT; larger numbers would fail in the database instead of here.
MAX_INT = 2**32 - 1
MAX_BIGINT = 2**63 - 1


def _limit(maximum: int) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=maximum, allow_null=True, required=False)


class QuotaSerializer(StrictModelSerializer):
    department = serializers.IntegerField(source="department_id", allow_null=True, required=False)
    department_name = serializers.CharField(source="department.name", read_only=True, default=None, allow_null=True)
    user = serializers.IntegerField(source="user_id", allow_null=True, required=False)
    username = serializers.CharField(source="user.username", read_only=True, default=None, allow_null=True)
    tokens_per_day = _limit(MAX_BIGINT)
    tokens_per_month = _limit(MAX_BIGINT)
    requests_per_minute = _limit(MAX_INT)
    concurrent_requests = _limit(MAX_INT)
    max_tokens_per_request = _limit(MAX_INT)

    class Meta:
        model = Quota
        fields = ["id", "department", "department_name", "user", "username", *LIMIT_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (attrs.get("department_id") is None) == (attrs.get("user_id") is None):
            message = "Give either a department or a user."
            raise serializers.ValidationError({"department": [message], "user": [message]})
        return attrs


class QuotaUpdateSerializer(QuotaSerializer):
    """Changes limits only: a quota never moves to another department or user."""

    department = serializers.IntegerField(source="department_id", read_only=True)
    user = serializers.IntegerField(source="user_id", read_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs


class UsageRecordSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True, default=None, allow_null=True)
    department_name = serializers.CharField(source="department.name", read_only=True, default=None, allow_null=True)
    total_tokens = serializers.IntegerField(read_only=True)

    class Meta:
        model = UsageRecord
        fields = [
            "id",
            "request_id",
            "user",
            "username",
            "api_key",
            "department",
            "department_name",
            "deployment_id",
            "model",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "latency_ms",
            "ttft_ms",
            "status",
            "created_at",
            "day",
        ]
        read_only_fields = fields


class UsageSummarySerializer(StrictSerializer):
    key = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    failed = serializers.IntegerField()
    rejected = serializers.IntegerField()
    avg_latency_ms = serializers.IntegerField(allow_null=True)
    avg_ttft_ms = serializers.IntegerField(allow_null=True)

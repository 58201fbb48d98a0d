from __future__ import annotations

from rest_framework import serializers

from appliance.accounts.choices import Role
from appliance.core.api.serializers import StrictModelSerializer, StrictSerializer
from appliance.sso.choices import Source
from appliance.sso.models import MappingRule


class MappingRuleSerializer(StrictModelSerializer):
    department = serializers.IntegerField(source="department_id", allow_null=True, required=False)
    department_name = serializers.CharField(source="department.name", read_only=True, allow_null=True, default=None)
    position = serializers.IntegerField(min_value=0, max_value=100_000, required=False, allow_null=True)

    class Meta:
        model = MappingRule
        fields = ["id", "source", "claim", "value", "department", "department_name", "role", "position",
                  "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["id", "created_at", "updated_at"]


class MappingRuleUpdateSerializer(StrictSerializer):
    source = serializers.ChoiceField(choices=Source.choices, required=False)  # type: ignore[assignment]
    claim = serializers.CharField(max_length=64, allow_blank=True, required=False)
    value = serializers.CharField(max_length=512, required=False)
    department = serializers.IntegerField(source="department_id", allow_null=True, required=False)
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    position = serializers.IntegerField(min_value=0, max_value=100_000, required=False)

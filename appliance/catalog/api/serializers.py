from __future__ import annotations

from typing import Any

from rest_framework import serializers

from appliance.catalog.choices import KV_DTYPES, PRECISIONS, Engine, Tier
from appliance.catalog.fit import Fit
from appliance.catalog.models import SPEC_FIELDS, Profile, ProfileVersion
from appliance.catalog.planner import PLAN_KEYS, Plan
from appliance.core.api.serializers import StrictSerializer
from appliance.engines.registry import ENGINES


class CapacitySerializer(StrictSerializer):
    """The planner's question; names as in `PlanRequest`, so a 400 names the field sent."""

    model = serializers.CharField(max_length=64)
    gpu_count = serializers.IntegerField()
    memory_per_gpu_gib = serializers.FloatField(default=0)
    context_length = serializers.IntegerField(default=4096)
    gpu_memory_utilization = serializers.FloatField(default=0.9)
    tensor_parallel = serializers.IntegerField(required=False, allow_null=True, default=None)
    pipeline_parallel = serializers.IntegerField(default=1)
    dtype = serializers.CharField(default="auto", max_length=16)
    kv_dtype = serializers.CharField(default="auto", max_length=16)
    engine = serializers.CharField(default="vllm", max_length=16)
    cpu_ram_gib = serializers.FloatField(required=False, allow_null=True, default=None)


class PlanSerializer(serializers.Serializer):
    """Exactly the keys of `Plan.to_dict()` (for the schema; the view returns the dict)."""

    def to_representation(self, instance: Plan) -> dict[str, Any]:
        return {key: getattr(instance, key) for key in PLAN_KEYS}


class CatalogEntrySerializer(serializers.Serializer):
    """A catalog entry as `ModelEntry.to_dict()` gives it, plus whether it shipped with the console."""

    slug = serializers.CharField()
    display_name = serializers.CharField()
    builtin = serializers.BooleanField(read_only=True)


class ProfileWriteSerializer(StrictSerializer):
    """Fields of a profile and of its spec. Ranges are checked by the planner and `specs`, naming the field."""

    slug = serializers.CharField(required=False, max_length=64)
    name = serializers.CharField(required=False, max_length=128)
    tier = serializers.ChoiceField(choices=Tier.choices, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    note = serializers.CharField(required=False, allow_blank=True, max_length=255, help_text="Why this version.")
    model = serializers.CharField(required=False, max_length=64)
    engine = serializers.ChoiceField(choices=Engine.choices, required=False)
    precision = serializers.ChoiceField(choices=PRECISIONS, required=False)
    kv_dtype = serializers.ChoiceField(choices=KV_DTYPES, required=False)
    nodes = serializers.IntegerField(required=False)
    gpus_per_node = serializers.IntegerField(required=False)
    min_gpu_memory_gib = serializers.FloatField(required=False, allow_null=True)
    gpu_model = serializers.CharField(required=False, allow_blank=True, max_length=64)
    tensor_parallel = serializers.IntegerField(required=False)
    pipeline_parallel = serializers.IntegerField(required=False)
    max_model_len = serializers.IntegerField(required=False)
    gpu_memory_utilization = serializers.FloatField(required=False)
    max_num_seqs = serializers.IntegerField(required=False, allow_null=True)
    cpu_ram_gib = serializers.FloatField(required=False, allow_null=True)
    extra_args = serializers.JSONField(required=False)
    chat_defaults = serializers.JSONField(required=False)
    default_max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    reference_price_cny = serializers.IntegerField(required=False, allow_null=True)
    concurrency_min = serializers.IntegerField(required=False, allow_null=True)
    concurrency_max = serializers.IntegerField(required=False, allow_null=True)
    requests_per_second_min = serializers.IntegerField(required=False, allow_null=True)
    requests_per_second_max = serializers.IntegerField(required=False, allow_null=True)


assert set(SPEC_FIELDS) <= set(ProfileWriteSerializer().fields)
assert set(ENGINES) == set(Engine.values)


class ProfileVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = ProfileVersion
        fields = ["id", "profile", "number", *SPEC_FIELDS, "note", "created_by", "created_at"]
        read_only_fields = fields


class ProfileSerializer(serializers.ModelSerializer):
    """A profile with its current spec flattened in, and its fit from ``context["fits"]`` when given."""

    class Meta:
        model = Profile
        fields = ["id", "slug", "name", "tier", "description", "builtin", "created_at", "updated_at"]
        read_only_fields = fields

    def to_representation(self, instance: Profile) -> dict[str, Any]:
        data = super().to_representation(instance)
        version = instance.current_version
        data["version"] = version.number if version else None
        data["version_id"] = version.pk if version else None
        data.update(version.spec() if version else dict.fromkeys(SPEC_FIELDS))
        fit: Fit | None = self.context.get("fits", {}).get(instance.pk)
        data["fit"] = fit.to_dict() if fit is not None else None
        plans: dict[int, Plan | None] = self.context.get("plans", {})
        if instance.pk in plans:
            plan = plans[instance.pk]
            data["plan"] = plan.to_dict() if plan is not None else None
        return data


class FitSerializer(serializers.Serializer):
    """Whether a profile fits a department's pool now (``Fit.to_dict()`` with the ids asked about)."""

    profile = serializers.IntegerField()
    department = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    summary = serializers.CharField()
    changes = serializers.ListField(child=serializers.JSONField())
    placement = serializers.JSONField(allow_null=True)
    plan = serializers.JSONField(allow_null=True)

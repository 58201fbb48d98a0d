from __future__ import annotations

from rest_framework import serializers

from appliance.core.api.serializers import StrictModelSerializer, StrictSerializer
from appliance.safety.choices import Action
from appliance.safety.models import SafetyHit, WordList


class WordListSerializer(StrictModelSerializer):
    department = serializers.IntegerField(source="department_id", allow_null=True, required=False)
    department_name = serializers.CharField(source="department.name", read_only=True, allow_null=True, default=None)
    rule_count = serializers.SerializerMethodField()

    class Meta:
        model = WordList
        fields = ["id", "name", "department", "department_name", "enabled", "rule_count", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_rule_count(self, obj: WordList) -> int:
        annotated = getattr(obj, "rule_count", None)  # lists read through the viewset's queryset carry it
        return int(annotated) if annotated is not None else obj.rules.count()


class WordListUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    enabled = serializers.BooleanField(required=False)


class ImportSerializer(StrictSerializer):
    """The words as UTF-8 text (see appliance/safety/services.py for the format)."""

    text = serializers.CharField(allow_blank=True, trim_whitespace=False)
    default_action = serializers.ChoiceField(choices=Action.choices, default=Action.BLOCK)
    replace = serializers.BooleanField(default=False)


class ImportResultSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    updated = serializers.IntegerField()
    skipped = serializers.IntegerField()
    total = serializers.IntegerField()


class SafetyHitSerializer(serializers.ModelSerializer):
    class Meta:
        model = SafetyHit
        fields = [
            "id", "created_at", "department", "user", "username", "word_list", "list_name", "rule", "word", "action",
            "stage", "channel", "model", "request_id", "excerpt",
        ]  # fmt: skip
        read_only_fields = fields

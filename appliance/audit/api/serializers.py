from rest_framework import serializers

from appliance.audit.models import AuditRecord


class AuditRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditRecord
        fields = [
            "id",
            "seq",
            "created_at",
            "actor",
            "actor_name",
            "department",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "before",
            "after",
            "request_id",
            "source_ip",
            "user_agent",
            "via",
            "hash",
        ]
        read_only_fields = fields

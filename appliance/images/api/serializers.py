from __future__ import annotations

from typing import Any

from rest_framework import serializers

from appliance.core.api.serializers import StrictSerializer
from appliance.engines import ENGINES
from appliance.images.models import ImageImport, NodeImage
from appliance.images.references import InvalidReference, normalize_reference


class NodeImageSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.name")

    class Meta:
        model = NodeImage
        fields = ["id", "node", "node_id", "tag", "image_id", "size_bytes", "created", "seen_at"]
        read_only_fields = fields


class ImageImportSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.name")
    created_by = serializers.CharField(source="created_by.username")

    class Meta:
        model = ImageImport
        fields = [
            "id",
            "node",
            "path",
            "size_bytes",
            "sha256",
            "state",
            "bytes_read",
            "progress",
            "loaded_tags",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields


class ImageImportCreateSerializer(StrictSerializer):
    """Either ``file`` (multipart upload of a ``docker save`` tarball) or ``path`` (already in the import
    directory), and the target ``nodes`` by name."""

    nodes = serializers.ListField(child=serializers.CharField(max_length=64), min_length=1, max_length=64)
    file = serializers.FileField(required=False)
    path = serializers.CharField(required=False, max_length=512)
    sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$", required=False, error_messages={"invalid": "A SHA-256 is 64 hexadecimal digits."}
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("file" in attrs) == ("path" in attrs):
            name = "path" if "file" in attrs else "file"
            raise serializers.ValidationError({name: ["Upload a tarball as file, or give the path of one; not both."]})
        return attrs


class EngineImageEntrySerializer(serializers.Serializer):
    """An engine, its image tag and which of the nodes you can see have that image."""

    engine = serializers.CharField()
    image = serializers.CharField()
    default_image = serializers.CharField()
    customized = serializers.BooleanField(help_text="False: the image is the settings' default.")
    updated_at = serializers.DateTimeField(allow_null=True)
    present_on = serializers.ListField(child=serializers.CharField())
    missing_on = serializers.ListField(child=serializers.CharField())


class EngineImageWriteSerializer(StrictSerializer):
    engine = serializers.ChoiceField(choices=ENGINES)
    image = serializers.CharField(max_length=255)

    def validate_image(self, value: str) -> str:
        try:
            return normalize_reference(value)
        except InvalidReference as exc:
            raise serializers.ValidationError(str(exc)) from None

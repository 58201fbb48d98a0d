from __future__ import annotations

from typing import Any, ClassVar

from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from appliance.accounts.choices import Role
from appliance.accounts.models import ApiKey, Department, User, code_validator
from appliance.core.api.serializers import StrictModelSerializer, StrictSerializer

# A host name as vLLM compares it (url.hostname, lower case): no scheme, port, path or wildcard.
_HOST = RegexValidator(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    _("Give host names only, such as images.example.com."),
)


class MediaDomainField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        # Host names are case-insensitive and may end with the root's dot; vLLM compares the bare form.
        return str(super().to_internal_value(data)).strip().lower().rstrip(".")


class DepartmentSerializer(StrictModelSerializer):
    parent = serializers.IntegerField(source="parent_id", allow_null=True, required=False)  # type: ignore[assignment]
    allowed_media_domains = serializers.ListField(
        child=MediaDomainField(max_length=253, validators=[_HOST]),
        max_length=64,
        required=False,
        help_text="Hosts this department's engines may fetch image_url from; empty: none.",
    )

    class Meta:
        model = Department
        fields = ["id", "code", "name", "parent", "path", "allowed_media_domains", "created_at"]
        read_only_fields = ["id", "path", "created_at"]
        # Uniqueness is the database's job: a duplicate answers 409 from the service, not 400 here.
        extra_kwargs = {"code": {"validators": [code_validator]}, "name": {"validators": []}}


class UserSerializer(StrictModelSerializer):
    department = serializers.IntegerField(source="department_id", allow_null=True, required=False)
    department_name = serializers.CharField(source="department.name", read_only=True, default=None, allow_null=True)
    password = serializers.CharField(write_only=True, required=False, max_length=128, style={"input_type": "password"})
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "display_name",
            "email",
            "department",
            "department_name",
            "role",
            "is_active",
            "is_service_account",
            "password",
            "date_joined",
            "last_login",
        ]
        read_only_fields = ["id", "is_active", "date_joined", "last_login"]
        extra_kwargs: ClassVar[dict[str, Any]] = {"username": {"validators": []}}


class UserUpdateSerializer(UserSerializer):
    class Meta(UserSerializer.Meta):
        read_only_fields = ["id", "username", "is_service_account", "password", "date_joined", "last_login"]


class PasswordChangeSerializer(StrictSerializer):
    old_password = serializers.CharField(required=False, max_length=128)
    new_password = serializers.CharField(max_length=128)


class ApiKeySerializer(StrictModelSerializer):
    user = serializers.IntegerField(source="user_id", required=False, allow_null=True)
    username = serializers.CharField(source="user.username", read_only=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "user",
            "username",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "is_active",
            "can_create_keys",
            "parent",
        ]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at", "parent"]


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The secret. Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]

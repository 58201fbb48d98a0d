from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from appliance.accounts import services
from appliance.accounts.api.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    DepartmentSerializer,
    PasswordChangeSerializer,
    UserSerializer,
    UserUpdateSerializer,
)
from appliance.accounts.models import ApiKey, Department, User, acting_user
from appliance.core.api.viewsets import RestrictedViewSet


class DepartmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    queryset = Department.objects.select_related("parent")
    serializer_class = DepartmentSerializer
    filter_map = {"parent": "parent_id", "code": "code"}

    def create(self, request: Request) -> Response:
        ser = self.get_serializer(data=request.data)
        ser.is_valid(raise_exception=True)
        dept = services.create_department(acting_user(request), **ser.validated_data)
        return Response(self.get_serializer(dept).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        ser = self.get_serializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        dept = services.update_department(acting_user(request), int(pk), **ser.validated_data)
        return Response(self.get_serializer(dept).data)

    def destroy(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        services.delete_department(acting_user(request), int(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    queryset = User.objects.select_related("department")
    serializer_class = UserSerializer
    filter_map = {"department": "department_id", "role": "role", "is_active": "is_active", "username": "username"}

    def create(self, request: Request) -> Response:
        ser = UserSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        # A user without a department (platform admin, auditor) may leave it out.
        user = services.create_user(acting_user(request), **{"department_id": None, **ser.validated_data})
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=UserUpdateSerializer, responses=UserSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        ser = UserUpdateSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        user = services.update_user(acting_user(request), int(pk), **ser.validated_data)
        return Response(UserSerializer(user).data)

    @extend_schema(request=PasswordChangeSerializer, responses={204: None})
    @action(detail=True, methods=["post"], url_path="password")
    def password(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        ser = PasswordChangeSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        services.set_password(
            acting_user(request),
            int(pk),
            ser.validated_data["new_password"],
            old_password=ser.validated_data.get("old_password"),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=False, methods=["get"])
    def me(self, request: Request) -> Response:
        return Response(UserSerializer(request.user).data)


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    queryset = ApiKey.objects.select_related("user")
    serializer_class = ApiKeySerializer
    filter_map = {"user": "user_id"}

    @extend_schema(request=ApiKeySerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request: Request) -> Response:
        ser = ApiKeySerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        key, plaintext = services.create_api_key(
            acting_user(request),
            name=data["name"],
            user_id=data.get("user_id"),
            expires_at=data.get("expires_at"),
            can_create_keys=data.get("can_create_keys", False),
            via_key=request.auth if isinstance(request.auth, ApiKey) else None,
        )
        return Response({**ApiKeySerializer(key).data, "key": plaintext}, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        key = services.revoke_api_key(acting_user(request), int(pk))
        return Response(ApiKeySerializer(key).data)

    def destroy(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        services.revoke_api_key(acting_user(request), int(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

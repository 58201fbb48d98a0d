from __future__ import annotations

from typing import Any

from django.db.models import Count
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from appliance.accounts.models import Department, acting_user
from appliance.core.api.serializers import StrictSerializer
from appliance.core.api.viewsets import RestrictedViewSet
from appliance.core.exceptions import NotFound
from appliance.core.querysets import VIEW
from appliance.safety import labels, services
from appliance.safety.api.serializers import (
    ImportResultSerializer,
    ImportSerializer,
    SafetyHitSerializer,
    WordListSerializer,
    WordListUpdateSerializer,
)
from appliance.safety.models import SafetyHit, WordList


class WordListViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    """Word lists: platform admins manage all; department admins those of their subtree (platform ones read-only)."""

    queryset = WordList.objects.select_related("department").annotate(rule_count=Count("rules")).order_by("id")
    serializer_class = WordListSerializer
    filter_map = {"department": "department_id"}

    def create(self, request: Request) -> Response:
        ser = WordListSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        created = services.create_list(
            acting_user(request), name=data["name"], department_id=data.get("department_id"),
            enabled=data.get("enabled", True),
        )  # fmt: skip
        return Response(WordListSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=WordListUpdateSerializer, responses=WordListSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        ser = WordListUpdateSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        updated = services.update_list(acting_user(request), int(pk), **ser.validated_data)
        return Response(WordListSerializer(updated).data)

    def destroy(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        services.delete_list(acting_user(request), int(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=ImportSerializer, responses=ImportResultSerializer)
    @action(detail=True, methods=["post"], url_path="import", parser_classes=[JSONParser, FormParser, MultiPartParser])
    def import_words(self, request: Request, pk: str) -> Response:
        """Words from UTF-8 text: one a line, optionally a tab and ``block``/``mask``/``record``; or a file ``file``."""
        self.get_object_for("view")
        data: dict[str, Any] = {k: v for k, v in request.data.items() if k != "file"}
        upload = request.FILES.get("file")
        if upload is not None:
            data["text"] = upload.read().decode("utf-8-sig", errors="strict")
        ser = ImportSerializer(data=data)
        ser.is_valid(raise_exception=True)
        result = services.import_words(acting_user(request), int(pk), **ser.validated_data)
        return Response(ImportResultSerializer(result).data)

    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str) -> HttpResponse:
        response = HttpResponse(
            services.export_words(acting_user(request), int(pk)), content_type="text/plain; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="word-list-{int(pk)}.txt"'
        return response


HIT_FILTERS = [
    OpenApiParameter(name, OpenApiTypes.STR)
    for name in ("department", "user", "word_list", "action", "stage", "channel", "since", "until")
]


@extend_schema(parameters=HIT_FILTERS)
class SafetyHitViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    """Content-safety hits: auditors and platform admins see all, department admins their subtree."""

    queryset = SafetyHit.objects.all()
    serializer_class = SafetyHitSerializer
    filter_map = {
        "department": "department_id", "user": "user_id", "word_list": "word_list_id", "action": "action",
        "stage": "stage", "channel": "channel", "since": "created_at__gte", "until": "created_at__lt",
    }  # fmt: skip


class AiLabelSerializer(StrictSerializer):
    department = serializers.IntegerField(allow_null=True, required=False, default=None)
    enabled = serializers.BooleanField()


class AiLabelView(APIView):
    """Whether answers carry the "AI-generated" label: ``GET ?department=`` (the effective value), ``PUT`` to set it."""

    @extend_schema(parameters=[OpenApiParameter("department", OpenApiTypes.INT)], responses=AiLabelSerializer)
    def get(self, request: Request) -> Response:
        user = acting_user(request)
        raw = request.query_params.get("department")
        department_id = int(raw) if raw and raw.isdigit() else user.department_id
        if department_id is not None and not Department.objects.restrict(user, VIEW).filter(pk=department_id).exists():
            raise NotFound("Not found.")
        return Response({"department": department_id, "enabled": labels.shown_for(department_id)})

    @extend_schema(request=AiLabelSerializer, responses=AiLabelSerializer)
    def put(self, request: Request) -> Response:
        ser = AiLabelSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        setting = labels.set_shown(
            acting_user(request), ser.validated_data["department"], ser.validated_data["enabled"]
        )
        return Response({"department": setting.department_id, "enabled": setting.enabled})

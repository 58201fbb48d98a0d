from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from appliance.accounts.models import acting_user
from appliance.core.api.viewsets import RestrictedViewSet
from appliance.quotas import reports, services
from appliance.quotas.api.serializers import (
    QuotaSerializer,
    QuotaUpdateSerializer,
    UsageRecordSerializer,
    UsageSummarySerializer,
)
from appliance.quotas.models import Quota, UsageRecord


class QuotaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    queryset = Quota.objects.select_related("department", "user")
    serializer_class = QuotaSerializer
    filter_map = {"department": "department_id", "user": "user_id"}

    def create(self, request: Request) -> Response:
        ser = QuotaSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        quota = services.create_quota(acting_user(request), **ser.validated_data)
        return Response(QuotaSerializer(quota).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=QuotaUpdateSerializer, responses=QuotaSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        ser = QuotaUpdateSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        quota = services.update_quota(acting_user(request), int(pk), **ser.validated_data)
        return Response(QuotaSerializer(quota).data)

    def destroy(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        services.delete_quota(acting_user(request), int(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=False, methods=["get"])
    def mine(self, request: Request) -> Response:
        """The limits that apply to the caller (own, department, ancestors) and their use right now."""
        return Response(services.remaining_for(acting_user(request)))


USAGE_FILTERS = [
    OpenApiParameter("user", OpenApiTypes.INT),
    OpenApiParameter("department", OpenApiTypes.INT, description="with its sub-departments"),
    OpenApiParameter("api_key", OpenApiTypes.INT),
    OpenApiParameter("deployment", OpenApiTypes.INT),
    OpenApiParameter("model", OpenApiTypes.STR),
    OpenApiParameter("status", OpenApiTypes.STR),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="inclusive; a date means its local midnight"),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="exclusive"),
]
GROUP_BY = OpenApiParameter("group_by", OpenApiTypes.STR, enum=["day", "user", "department", "model"])


def _csv(lines: Any, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@extend_schema(parameters=USAGE_FILTERS)
class UsageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    """Usage records: members see their own, department admins their subtree, auditors and platform admins all."""

    queryset = UsageRecord.objects.select_related("user", "department")
    serializer_class = UsageRecordSerializer

    def apply_filters(self, qs: QuerySet[Any], request: Request) -> QuerySet[Any]:
        return reports.filter_usage(qs, request.query_params) if self.action != "retrieve" else qs

    @extend_schema(parameters=[GROUP_BY], responses=UsageSummarySerializer(many=True))
    @action(detail=False, methods=["get"])
    def summary(self, request: Request) -> Response:
        group_by = reports.group_by_param(request.query_params)
        rows = reports.summarize(self.get_queryset(), group_by)
        page = self.paginate_queryset(rows)
        data = [reports.summary_row(row, group_by) for row in (page if page is not None else rows)]
        return self.get_paginated_response(data) if page is not None else Response(data)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=False, methods=["get"])
    def export(self, request: Request) -> StreamingHttpResponse:
        qs = self.get_queryset().order_by("created_at", "id")
        return _csv(reports.csv_lines(reports.RECORD_COLUMNS, reports.record_rows(qs)), "usage.csv")

    @extend_schema(parameters=[GROUP_BY], responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=False, methods=["get"], url_path="summary/export")
    def summary_export(self, request: Request) -> StreamingHttpResponse:
        group_by = reports.group_by_param(request.query_params)
        rows = reports.summary_rows(self.get_queryset(), group_by)
        return _csv(reports.csv_lines(reports.SUMMARY_COLUMNS, rows), f"usage-by-{group_by}.csv")

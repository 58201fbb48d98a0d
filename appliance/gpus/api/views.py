"""Nodes, GPUs, assignable units and quotas. Thin: reads go through the gate, writes through services."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet, Sum
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from appliance.accounts.models import acting_user
from appliance.core.api.viewsets import RestrictedViewSet
from appliance.core.exceptions import InvalidInput
from appliance.core.querysets import VIEW
from appliance.gpus import metrics, services
from appliance.gpus.api.serializers import (
    GpuAssignSerializer,
    GpuMetricsQuerySerializer,
    GpuMetricsSerializer,
    GpuMoveSerializer,
    GpuQuotaSerializer,
    GpuQuotaSetSerializer,
    GpuQuotaUpdateSerializer,
    GpuReleaseSerializer,
    GpuSerializer,
    GpuSummarySerializer,
    GpuUnitSerializer,
    NodeMaintenanceSerializer,
    NodeSerializer,
)
from appliance.gpus.models import Gpu, GpuQuota, GpuUnit, Node


def parse_bool(value: str, name: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidInput(f"'{name}' must be true or false.", code="invalid_filter")


class NodeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    queryset = Node.objects.annotate(gpu_count=Count("gpus")).order_by("name")
    serializer_class = NodeSerializer
    filter_map = {"state": "state", "name": "name"}

    @extend_schema(request=NodeMaintenanceSerializer, responses=NodeSerializer)
    @action(detail=True, methods=["post"])
    def maintenance(self, request: Request, pk: str) -> Response:
        self.get_object_for(VIEW)
        ser = NodeMaintenanceSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        services.set_maintenance(acting_user(request), int(pk), **ser.validated_data)
        return Response(NodeSerializer(self.queryset.get(pk=pk)).data)


def _unit_filters(qs: QuerySet[Any], request: Request, prefix: str = "") -> QuerySet[Any]:
    """``department`` and ``free`` select units; on GPUs they select GPUs having such a unit."""
    department, free = request.query_params.get("department"), request.query_params.get("free")
    conditions = Q()
    if department:
        conditions &= Q(department_id=department)
    if free:
        is_free = Q(state="present", department__isnull=True)
        conditions &= is_free if parse_bool(free, "free") else ~is_free
    if not conditions:
        return qs
    if prefix:
        return qs.filter(pk__in=GpuUnit.objects.filter(conditions).values(prefix))
    return qs.filter(conditions)


class GpuViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    """Physical GPUs with their live readings; ``units`` lists the units the caller may see."""

    queryset = Gpu.objects.select_related("node")
    serializer_class = GpuSerializer
    filter_map = {"node": "node_id", "state": "state", "simulated": "simulated"}

    def get_queryset(self) -> QuerySet[Any]:
        units = GpuUnit.objects.restrict(self.request.user, VIEW).select_related("gpu__node", "department", "claim")
        return super().get_queryset().prefetch_related(Prefetch("units", queryset=units, to_attr="visible_units"))

    def apply_filters(self, qs: QuerySet[Any], request: Request) -> QuerySet[Any]:
        qs = super().apply_filters(qs, request)
        return _unit_filters(qs, request, prefix="gpu_id") if self.action == "list" else qs

    @extend_schema(parameters=[GpuMetricsQuerySerializer], responses=GpuMetricsSerializer)
    @action(detail=True, methods=["get"])
    def metrics(self, request: Request, pk: str) -> Response:
        gpu = self.get_object_for(VIEW)
        query = GpuMetricsQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        until = query.validated_data.get("until") or timezone.now()
        since = query.validated_data.get("since") or until - timedelta(hours=1)
        history = metrics.history(gpu.pk, since, until, query.validated_data.get("step"))
        return Response({"gpu": gpu.pk, **history.__dict__})


class GpuUnitViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    """Assignable units (whole GPUs or MIG slices); assignment actions are for platform admins."""

    queryset = GpuUnit.objects.select_related("gpu__node", "department", "claim")
    serializer_class = GpuUnitSerializer
    filter_map = {"node": "gpu__node_id", "gpu": "gpu_id", "state": "state", "kind": "kind", "simulated": "simulated"}

    def apply_filters(self, qs: QuerySet[Any], request: Request) -> QuerySet[Any]:
        qs = super().apply_filters(qs, request)
        return _unit_filters(qs, request) if self.action == "list" else qs

    def _units_response(self, units: list[GpuUnit]) -> Response:
        fresh = self.queryset.filter(pk__in=[unit.pk for unit in units])
        return Response(GpuUnitSerializer(fresh, many=True).data)

    @extend_schema(request=GpuAssignSerializer, responses=GpuUnitSerializer(many=True))
    @action(detail=False, methods=["post"], pagination_class=None)
    def assign(self, request: Request) -> Response:
        ser = GpuAssignSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        return self._units_response(services.assign_units(acting_user(request), data["units"], data["department"]))

    @extend_schema(request=GpuReleaseSerializer, responses=GpuUnitSerializer(many=True))
    @action(detail=False, methods=["post"], pagination_class=None)
    def release(self, request: Request) -> Response:
        ser = GpuReleaseSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        return self._units_response(services.release_units(acting_user(request), data["units"], force=data["force"]))

    @extend_schema(request=GpuMoveSerializer, responses=GpuUnitSerializer(many=True))
    @action(detail=False, methods=["post"], pagination_class=None)
    def move(self, request: Request) -> Response:
        ser = GpuMoveSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        units = services.move_units(acting_user(request), data["units"], data["department"], force=data["force"])
        return self._units_response(units)

    @extend_schema(responses=GpuSummarySerializer)
    @action(detail=False, methods=["get"])
    def summary(self, request: Request) -> Response:
        """Free and total units of the appliance, and the pools the caller may see."""
        return Response(services.pool_summary(acting_user(request)))


class GpuQuotaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    queryset = (
        GpuQuota.objects.select_related("department")
        .annotate(used_units=Count("department__gpu_units"), used_memory=Sum("department__gpu_units__memory_total"))
        .order_by("department__path")
    )
    serializer_class = GpuQuotaSerializer
    filter_map = {"department": "department_id"}

    @extend_schema(request=GpuQuotaSetSerializer, responses=GpuQuotaSerializer)
    def create(self, request: Request) -> Response:
        """Set a department's quota, creating it if needed; null limits mean unlimited."""
        ser = GpuQuotaSetSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        quota = services.set_quota(
            acting_user(request),
            data["department"],
            max_units=data["max_units"],
            max_memory_gib=data["max_memory_gib"],
            max_containers=data["max_containers"],
        )
        return Response(GpuQuotaSerializer(self.queryset.get(pk=quota.pk)).data, status=status.HTTP_200_OK)

    @extend_schema(request=GpuQuotaUpdateSerializer, responses=GpuQuotaSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        quota = self.get_object_for(VIEW)
        assert isinstance(quota, GpuQuota)
        ser = GpuQuotaUpdateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        current = {"max_units": quota.max_units, "max_memory_gib": quota.max_memory_gib}
        changes = {**current, "max_containers": quota.max_containers, **ser.validated_data}
        services.set_quota(acting_user(request), quota.department_id, **changes)
        return Response(GpuQuotaSerializer(self.queryset.get(pk=pk)).data)

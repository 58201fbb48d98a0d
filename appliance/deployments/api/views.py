from __future__ import annotations

from collections.abc import Callable

from django.db.models import Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from appliance.accounts.models import acting_user
from appliance.core.api.viewsets import RestrictedViewSet
from appliance.core.exceptions import InvalidInput
from appliance.deployments import logs, services
from appliance.deployments.api.serializers import (
    DeploymentCreateSerializer,
    DeploymentSerializer,
    EventSerializer,
    OnDemandSerializer,
)
from appliance.deployments.models import Deployment, Instance


class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    queryset = Deployment.objects.select_related("department", "profile_version").prefetch_related(
        Prefetch("instances", queryset=Instance.objects.select_related("node"))
    )
    serializer_class = DeploymentSerializer
    filter_map = {
        "department": "department_id",
        "state": "state",
        "engine": "engine",
        "served_model_name": "served_model_name",
    }

    @extend_schema(request=DeploymentCreateSerializer, responses={201: DeploymentSerializer})
    def create(self, request: Request) -> Response:
        ser = DeploymentCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        dep = services.create_deployment(acting_user(request), **ser.service_kwargs())
        return Response(DeploymentSerializer(self.queryset.get(pk=dep.pk)).data, status=status.HTTP_201_CREATED)

    def _act(self, request: Request, pk: str, verb: str) -> Response:
        self.get_object_for("view")
        operations: dict[str, Callable[..., object]] = {
            "start": services.start_deployment,
            "stop": services.stop_deployment,
            "restart": services.restart_deployment,
        }
        operations[verb](acting_user(request), int(pk))
        return Response(DeploymentSerializer(self.queryset.get(pk=pk)).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: DeploymentSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str) -> Response:
        return self._act(request, pk, "start")

    @extend_schema(request=None, responses={202: DeploymentSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        return self._act(request, pk, "stop")

    @extend_schema(request=None, responses={202: DeploymentSerializer})
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, pk: str) -> Response:
        return self._act(request, pk, "restart")

    @extend_schema(request=OnDemandSerializer, responses={200: DeploymentSerializer})
    @action(detail=True, methods=["post"], url_path="on-demand")
    def on_demand(self, request: Request, pk: str) -> Response:
        """Mark the deployment on demand (stopped when idle, started by the next request) or not."""
        self.get_object_for("view")
        ser = OnDemandSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        services.set_on_demand(acting_user(request), int(pk), **ser.validated_data)
        return Response(DeploymentSerializer(self.queryset.get(pk=pk)).data)

    def destroy(self, request: Request, pk: str) -> Response:
        self.get_object_for("view")
        services.delete_deployment(acting_user(request), int(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=EventSerializer(many=True))
    @action(detail=True, methods=["get"])
    def events(self, request: Request, pk: str) -> Response:
        dep = self.get_object_for("view")
        qs: QuerySet = dep.events.all()  # type: ignore[attr-defined]
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(EventSerializer(page, many=True).data)

    @extend_schema(parameters=[OpenApiParameter("lines", OpenApiTypes.INT)], responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, pk: str) -> Response:
        dep = self.get_object_for("view")
        try:
            lines = min(max(int(request.query_params.get("lines", 200)), 1), 5000)
        except ValueError:
            raise InvalidInput("lines: must be an integer", code="invalid") from None
        return Response({"instances": logs.fetch(dep, lines)})  # type: ignore[arg-type]

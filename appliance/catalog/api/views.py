from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from appliance.accounts.models import acting_user
from appliance.catalog import services
from appliance.catalog.api.serializers import (
    CapacitySerializer,
    CatalogEntrySerializer,
    FitSerializer,
    PlanSerializer,
    ProfileSerializer,
    ProfileVersionSerializer,
    ProfileWriteSerializer,
)
from appliance.catalog.catalog import default_catalog
from appliance.catalog.models import CustomModel, Profile, ProfileVersion
from appliance.catalog.planner import PlanRequest
from appliance.core.api.pagination import Pagination
from appliance.core.api.viewsets import RestrictedViewSet
from appliance.core.exceptions import NotFound
from appliance.core.querysets import VIEW

DEPARTMENT_PARAM = OpenApiParameter(
    "department", OpenApiTypes.INT, description="fit against this department's GPU pool (default: your own)"
)


def _entry_data(entry: Any, custom: CustomModel | None) -> dict[str, Any]:
    data = entry.to_dict()
    data["builtin"] = custom is None
    data["created_at"] = custom.created_at if custom is not None else None
    return data


class CatalogViewSet(viewsets.ViewSet):
    """The model catalog: shipped entries (read-only) merged with custom ones admins add."""

    lookup_field = "slug"
    lookup_value_regex = r"[a-z0-9][a-z0-9._-]*"
    serializer_class = CatalogEntrySerializer
    pagination_class = Pagination  # list() paginates by hand; this tells the schema so

    def _customs(self, request: Request) -> QuerySet[CustomModel]:
        return CustomModel.objects.restrict(request.user, VIEW)

    def list(self, request: Request) -> Response:
        rows = [_entry_data(entry, None) for entry in default_catalog().values()]
        shipped = set(default_catalog())
        rows += [_entry_data(c.entry(), c) for c in self._customs(request) if c.slug not in shipped]
        paginator = Pagination()
        page: list[dict[str, Any]] | None = paginator.paginate_queryset(rows, request, view=self)  # type: ignore[arg-type]
        return paginator.get_paginated_response(page)

    def retrieve(self, request: Request, slug: str) -> Response:
        entry = default_catalog().get(slug)
        if entry is not None:
            return Response(_entry_data(entry, None))
        custom = self._customs(request).filter(slug=slug).first()
        if custom is None:
            raise NotFound(f"No model {slug!r} in the catalog.")
        return Response(_entry_data(custom.entry(), custom))

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: CatalogEntrySerializer})
    def create(self, request: Request) -> Response:
        custom = services.create_custom_model(acting_user(request), _body(request))
        return Response(_entry_data(custom.entry(), custom), status=status.HTTP_201_CREATED)

    @extend_schema(request=OpenApiTypes.OBJECT, responses=CatalogEntrySerializer)
    def update(self, request: Request, slug: str) -> Response:
        custom = services.replace_custom_model(acting_user(request), slug, _body(request))
        return Response(_entry_data(custom.entry(), custom))

    def destroy(self, request: Request, slug: str) -> Response:
        services.delete_custom_model(acting_user(request), slug)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _body(request: Request) -> dict[str, Any]:
    from appliance.core.exceptions import InvalidInput

    if not isinstance(request.data, dict):
        raise InvalidInput("entry: must be a JSON object", details={"entry": ["must be a JSON object"]})
    return dict(request.data)


class CapacityView(APIView):
    """The capacity planner: GET with query parameters (the calculator page) or POST with a JSON body."""

    @extend_schema(parameters=[CapacitySerializer], responses=PlanSerializer)
    def get(self, request: Request) -> Response:
        return self._answer(request.query_params.dict())

    @extend_schema(request=CapacitySerializer, responses=PlanSerializer)
    def post(self, request: Request) -> Response:
        return self._answer(request.data)

    def _answer(self, data: Any) -> Response:
        ser = CapacitySerializer(data=data)
        ser.is_valid(raise_exception=True)
        plan = services.capacity(PlanRequest(**ser.validated_data))
        return Response(plan.to_dict())


@extend_schema(parameters=[DEPARTMENT_PARAM])
class ProfileViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    """SKU profiles with their current spec and fit; writes make new versions (platform admins)."""

    queryset = Profile.objects.active().select_related("current_version")
    serializer_class = ProfileSerializer
    filter_map = {"tier": "tier", "slug": "slug"}

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        context.setdefault("fits", {})
        return context

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        rows = list(page if page is not None else self.get_queryset())
        department = services.fit_department(acting_user(request), request.query_params.get("department"))
        ser = ProfileSerializer(rows, many=True, context={"fits": services.fits(rows, department)})
        return self.get_paginated_response(ser.data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self._detail(request, self.get_object_for(VIEW)))

    def _detail(self, request: Request, obj: Any) -> dict[str, Any]:
        profile = Profile.objects.select_related("current_version").get(pk=obj.pk)
        department = services.fit_department(acting_user(request), request.query_params.get("department"))
        plans = {profile.pk: services.spec_plan(profile.current_version)} if profile.current_version else {}
        context = {"fits": services.fits([profile], department), "plans": plans}
        return ProfileSerializer(profile, context=context).data

    @extend_schema(request=ProfileWriteSerializer, responses={201: ProfileSerializer})
    def create(self, request: Request) -> Response:
        ser = ProfileWriteSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        profile = services.create_profile(acting_user(request), **ser.validated_data)
        return Response(self._detail(request, profile), status=status.HTTP_201_CREATED)

    @extend_schema(request=ProfileWriteSerializer, responses=ProfileSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        self.get_object_for(VIEW)
        ser = ProfileWriteSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        profile = services.update_profile(acting_user(request), int(pk), **ser.validated_data)
        return Response(self._detail(request, profile))

    def destroy(self, request: Request, pk: str) -> Response:
        self.get_object_for(VIEW)
        services.archive_profile(acting_user(request), int(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=ProfileVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, pk: str) -> Response:
        profile = self.get_object_for(VIEW)
        assert isinstance(profile, Profile)
        qs = ProfileVersion.objects.restrict(request.user, VIEW).filter(profile=profile).select_related("created_by")
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(ProfileVersionSerializer(page, many=True).data)

    @extend_schema(responses=FitSerializer)
    @action(detail=True, methods=["get"])
    def fit(self, request: Request, pk: str) -> Response:
        profile = self.get_object_for(VIEW)
        department = services.fit_department(acting_user(request), request.query_params.get("department"))
        result = services.fits([Profile.objects.select_related("current_version").get(pk=profile.pk)], department)
        return Response(
            {"profile": profile.pk, "department": department.pk if department else None, **result[profile.pk].to_dict()}
        )

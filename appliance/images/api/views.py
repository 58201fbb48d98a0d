"""``/api/v1/images/`` (what each node has, and imports) and ``/api/v1/engine-images/`` (the engine catalog)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from appliance.accounts.models import User, acting_user
from appliance.core.api.viewsets import RestrictedViewSet
from appliance.core.exceptions import InvalidInput, ServiceError
from appliance.images import services as image_services
from appliance.images.api.serializers import (
    EngineImageEntrySerializer,
    EngineImageWriteSerializer,
    ImageImportCreateSerializer,
    ImageImportSerializer,
    NodeImageSerializer,
)
from appliance.images.models import EngineImage, ImageImport, NodeImage
from appliance.images.permissions import may_manage_images
from appliance.images.uploads import TarballUploadHandler


class TooLarge(ServiceError):
    status_code = 413
    code = "too_large"


class NodeImageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    """Images each node's worker reported; ``POST import/`` loads a tarball on nodes (platform admins)."""

    queryset = NodeImage.objects.select_related("node")
    serializer_class = NodeImageSerializer
    filter_map = {"node": "node__name", "node_id": "node_id", "tag": "tag"}
    lookup_value_regex = r"\d+"
    upload_handler: TarballUploadHandler | None = None

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        drf_request = super().initialize_request(request, *args, **kwargs)
        if self.action == "import_image":
            # Before authentication: a session's CSRF check already parses the multipart body.
            self.upload_handler = TarballUploadHandler(request, lambda: _may_import(request))
            request.upload_handlers = [self.upload_handler]
        return drf_request

    @extend_schema(request=ImageImportCreateSerializer, responses={202: ImageImportSerializer(many=True)})
    @action(detail=False, methods=["post"], url_path="import", parser_classes=[MultiPartParser, JSONParser])
    def import_image(self, request: Request) -> Response:
        user = acting_user(request)
        image_services.require_image_admin(user)
        data = request.data
        if self.upload_handler is not None and self.upload_handler.too_large:
            raise TooLarge(
                f"file: larger than APPLIANCE_IMAGE_UPLOAD_MAX_BYTES ({self.upload_handler.limit} bytes); "
                "copy it into the import directory and import it by path",
                details={"file": ["too large"]},
            )
        ser = ImageImportCreateSerializer(data=data)
        ser.is_valid(raise_exception=True)
        args: dict[str, Any] = {"nodes": ser.validated_data["nodes"], "sha256": ser.validated_data.get("sha256", "")}
        if "file" in ser.validated_data:
            imports = image_services.import_upload(user, ser.validated_data["file"], **args)
        else:
            imports = image_services.import_from_path(user, path=ser.validated_data["path"], **args)
        rows = ImageImport.objects.select_related("node", "created_by").filter(pk__in=[i.pk for i in imports])
        return Response(ImageImportSerializer(rows, many=True).data, status=status.HTTP_202_ACCEPTED)


def _may_import(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)  # anonymous (or absent) until authenticated
    return isinstance(user, User) and may_manage_images(user)


class ImageImportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    """Imports with their progress (``bytes_read``, ``progress`` in percent) and outcome."""

    queryset = ImageImport.objects.select_related("node", "created_by")
    serializer_class = ImageImportSerializer
    filter_map = {"node": "node__name", "state": "state"}


class EngineImageViewSet(viewsets.GenericViewSet):
    """The engine catalog: engine → image tag, and which nodes have that image. Platform admins change it."""

    queryset = EngineImage.objects.none()
    serializer_class = EngineImageEntrySerializer
    lookup_field = "engine"
    lookup_value_regex = r"[^/]+"

    def list(self, request: Request) -> Response:
        entries = image_services.catalog(acting_user(request))
        page: list[image_services.CatalogEntry] | None = self.paginate_queryset(entries)  # type: ignore[arg-type]
        return self.get_paginated_response(EngineImageEntrySerializer(page, many=True).data)

    def retrieve(self, request: Request, engine: str) -> Response:
        return Response(EngineImageEntrySerializer(image_services.catalog_entry(acting_user(request), engine)).data)

    @extend_schema(request=EngineImageWriteSerializer, responses=EngineImageEntrySerializer)
    def update(self, request: Request, engine: str) -> Response:
        user = acting_user(request)
        image_services.require_image_admin(user)
        body = dict(request.data.items()) if hasattr(request.data, "items") else {}
        ser = EngineImageWriteSerializer(data={"engine": engine, **body})
        ser.is_valid(raise_exception=True)
        if ser.validated_data["engine"] != engine:
            raise InvalidInput("engine: does not match the URL", details={"engine": ["does not match the URL"]})
        image_services.set_engine_image(user, engine, ser.validated_data["image"])
        return Response(EngineImageEntrySerializer(image_services.catalog_entry(user, engine)).data)

    @extend_schema(request=EngineImageWriteSerializer, responses=EngineImageEntrySerializer)
    def partial_update(self, request: Request, engine: str) -> Response:
        return self.update(request, engine)

    def destroy(self, request: Request, engine: str) -> Response:
        image_services.reset_engine_image(acting_user(request), engine)
        return Response(status=status.HTTP_204_NO_CONTENT)

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request

from appliance.audit.api.serializers import AuditRecordSerializer
from appliance.audit.models import AuditRecord
from appliance.core.api.viewsets import RestrictedViewSet, filter_param
from appliance.core.exceptions import InvalidInput

CSV_COLUMNS = [
    "seq",
    "created_at",
    "actor_name",
    "department_id",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "before",
    "after",
    "request_id",
    "source_ip",
    "via",
    "hash",
]

FILTER_PARAMS = [
    OpenApiParameter("actor", OpenApiTypes.STR, description="part of the actor's username (case-insensitive)"),
    OpenApiParameter("department", OpenApiTypes.INT),
    OpenApiParameter(
        "action", OpenApiTypes.STR, description="part of the action code (case-insensitive): deployment, user."
    ),
    OpenApiParameter("target_type", OpenApiTypes.STR),
    OpenApiParameter("target_id", OpenApiTypes.STR),
    OpenApiParameter("since", OpenApiTypes.DATETIME),
    OpenApiParameter("until", OpenApiTypes.DATETIME),
]


def filter_audit(qs: QuerySet[AuditRecord], params: Any) -> QuerySet[AuditRecord]:
    """The audit log's filters, shared by the API, the CSV export and the page."""
    # People type a word they remember ("deployment", "ali"), not the exact code or the full name.
    simple = {
        "actor": "actor_name__icontains",
        "action": "action__icontains",
        "department": "department_id",
        "target_type": "target_type",
        "target_id": "target_id",
        "request_id": "request_id",
    }
    for param, lookup in simple.items():
        if params.get(param):
            qs = filter_param(qs, param, lookup, params[param])
    for param, lookup in (("since", "created_at__gte"), ("until", "created_at__lt")):
        if params.get(param):
            moment = parse_datetime(params[param])
            if moment is None:
                raise InvalidInput(f"{param}: not an ISO 8601 date-time", code="invalid_datetime")
            qs = qs.filter(**{lookup: moment})
    return qs


class _Echo:
    def write(self, value: str) -> str:
        return value


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection"); login
# names, labels and reasons are typed by anyone, so such cells get a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        # The console's time zone, as the page shows it, with the offset so the moment is unambiguous.
        return timezone.localtime(value).isoformat(timespec="seconds")
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_rows(qs: QuerySet[AuditRecord]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(CSV_COLUMNS)  # BOM: Excel opens UTF-8 Chinese text correctly
    for rec in qs.iterator(chunk_size=2000):
        yield writer.writerow([csv_cell(getattr(rec, col)) for col in CSV_COLUMNS])


@extend_schema(parameters=FILTER_PARAMS)
class AuditLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    queryset = AuditRecord.objects.all()
    serializer_class = AuditRecordSerializer

    def apply_filters(self, qs: QuerySet[Any], request: Request) -> QuerySet[Any]:
        return filter_audit(qs, request.query_params) if self.action in ("list", "export") else qs

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=False, methods=["get"], url_path="export")
    def export(self, request: Request) -> StreamingHttpResponse:
        qs = self.get_queryset().order_by("seq")
        response = StreamingHttpResponse(csv_rows(qs), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
        return response

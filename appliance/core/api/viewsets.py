"""The base API viewset: every queryset goes through ``restrict(user, action)``."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from rest_framework import viewsets
from rest_framework.request import Request

from appliance.core.exceptions import NotFound
from appliance.core.querysets import CHANGE, DELETE, VIEW

_ACTION_FOR_METHOD = {
    "GET": VIEW,
    "HEAD": VIEW,
    "OPTIONS": VIEW,
    "POST": CHANGE,
    "PUT": CHANGE,
    "PATCH": CHANGE,
    "DELETE": DELETE,
}


class RestrictedViewSet(viewsets.GenericViewSet):
    """Lists and detail lookups are restricted by the permission gate.

    ``filter_map`` maps a query parameter to an ORM lookup for simple exact filters; a user of
    department A asking for an object of department B gets 404, never 403, so ids don't leak.
    """

    filter_map: ClassVar[dict[str, str]] = {}

    def gate_action(self) -> str:
        return _ACTION_FOR_METHOD.get(self.request.method or "GET", VIEW)

    def get_queryset(self) -> QuerySet[Any]:
        qs = super().get_queryset()
        qs = qs.restrict(self.request.user, self.gate_action())  # type: ignore[attr-defined]
        return self.apply_filters(qs, self.request)

    def apply_filters(self, qs: QuerySet[Any], request: Request) -> QuerySet[Any]:
        if self.action != "list":
            return qs
        for param, lookup in self.filter_map.items():
            value = request.query_params.get(param)
            if value not in (None, ""):
                qs = qs.filter(**{lookup: value})
        return qs

    def get_object_for(self, action: str) -> Model:
        qs = self.queryset.restrict(self.request.user, action)  # type: ignore[union-attr]
        obj = qs.filter(pk=self.kwargs["pk"]).first()
        if obj is None:
            raise NotFound("Not found.")
        return obj

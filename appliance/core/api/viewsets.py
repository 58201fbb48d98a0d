"""The base API viewset: every queryset goes through ``restrict(user, action)``."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.utils.translation import gettext as _
from rest_framework import viewsets
from rest_framework.request import Request

from appliance.core.exceptions import InvalidInput, NotFound
from appliance.core.querysets import CHANGE, DELETE, VIEW

# Primary keys are positive integers. The router's default pattern lets anything without "/" or "." through,
# and a value such as "null,null" would then reach int() or the ORM and end as a 500.
_PK = re.compile(r"[0-9]{1,19}")

_ACTION_FOR_METHOD = {
    "GET": VIEW,
    "HEAD": VIEW,
    "OPTIONS": VIEW,
    "POST": CHANGE,
    "PUT": CHANGE,
    "PATCH": CHANGE,
    "DELETE": DELETE,
}


def filter_param(qs: QuerySet[Any], param: str, lookup: str, value: Any) -> QuerySet[Any]:
    """``qs.filter(lookup=value)`` for a query parameter; a value the field cannot take is a 400 naming it."""
    try:
        # The field converts the value here, when the lookup is built: "abc" for an id is a ValueError,
        # "maybe" for a boolean a ValidationError; both are the caller's mistake, not a server error.
        return qs.filter(**{lookup: value})
    except (ValueError, TypeError, ValidationError):
        message = _("Not a valid value.")
        raise InvalidInput(f"{param}: {message}", details={param: [message]}) from None


class RestrictedViewSet(viewsets.GenericViewSet):
    """Lists and detail lookups are restricted by the permission gate.

    ``filter_map`` maps a query parameter to an ORM lookup for simple exact filters; a user of
    department A asking for an object of department B gets 404, never 403, so ids don't leak.
    """

    filter_map: ClassVar[dict[str, str]] = {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # After authentication, so an anonymous caller still gets 401 and not a hint about the id.
        super().initial(request, *args, **kwargs)
        pk = kwargs.get("pk")
        if pk is not None and not _PK.fullmatch(pk):
            raise NotFound("Not found.")

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
                qs = filter_param(qs, param, lookup, value)
        return qs

    def get_object_for(self, action: str) -> Model:
        qs = self.queryset.restrict(self.request.user, action)  # type: ignore[union-attr]
        obj = qs.filter(pk=self.kwargs["pk"]).first()
        if obj is None:
            raise NotFound("Not found.")
        return obj

"""Every API error is ``{"error": {"code", "message", "details"}}`` with the right status."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from appliance.core.exceptions import ServiceError


def error_response(
    status_code: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        {"error": {"code": code, "message": message, "details": details}}, status=status_code, headers=headers
    )


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            inner = _first_message(value)
            return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        # A service error may carry response headers (Retry-After on quota rejections).
        headers = getattr(exc, "headers", None) or None
        return error_response(exc.status_code, exc.code, exc.message, exc.details, headers=headers)
    if isinstance(exc, RequestDataTooBig):
        # Django's own refusals while reading the body would otherwise answer with its HTML 400 page.
        return error_response(413, "too_large", _("The request body is larger than this server accepts."))
    if isinstance(exc, SuspiciousOperation):
        return error_response(400, "invalid", _("The request could not be read (too many fields or files)."))
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        code, message, details = "invalid", _first_message(exc.detail), exc.detail
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else str(exc.default_code)
        message, details = str(exc.detail), None
    response.data = {"error": {"code": code, "message": message, "details": details}}
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@csrf_exempt  # it changes nothing; a CSRF refusal would answer an API client's POST with an HTML page
def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any path under /api/ that no route matched: the error shape, never an HTML page.

    Routed last under /api/ (console/urls.py) rather than as ``handler404``, which Django skips
    while DEBUG is on; a path parameter holding "%2F" decodes to "/" and lands here.
    """
    body = {"error": {"code": "not_found", "message": _("No API endpoint at this path."), "details": None}}
    return JsonResponse(body, status=404)

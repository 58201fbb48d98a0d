"""The OpenAPI schema documents the errors every operation can answer, in the one error shape.

drf-spectacular documents only the success response of each operation; clients (and the fuzz run in
tests/security) need to know that any operation may also answer 400, 401, 403 or 404, and a write 409,
413 or 415, always as ``{"error": {"code", "message", "details"}}`` (appliance/core/api/errors.py).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable: invalid, not_found, permission_denied, …")
    message = serializers.CharField(help_text="For people; names the first offending field if there is one.")
    details = serializers.JSONField(allow_null=True, help_text="Per-field messages for invalid input, or null.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


ERRORS = {
    "400": "Invalid input (body, query parameter or filter value).",
    "401": "No credentials, or an invalid, expired or revoked API key.",
    "403": "Authenticated, but this role may not do this.",
    "404": "No such object, or not visible to this user (never 403, so ids do not leak).",
    "409": "Conflicts with the current state (a duplicate, a busy resource, a quota).",
    "413": "The request body is larger than the server accepts.",
    "415": "The request body's content type is not one the operation accepts.",
}
_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class AutoSchema(openapi.AutoSchema):
    def _error_codes(self) -> list[str]:
        codes = ["400", "404"]
        if not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes += ["401", "403"]
        if self.method in _WRITE_METHODS:
            codes.append("409")
        if self.method in _BODY_METHODS:
            codes += ["413", "415"]
        return codes

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if code not in responses:
                response = self._get_response_for_code(ErrorSerializer, code, ["application/json"], direction)
                response["description"] = ERRORS[code]
                responses[code] = response
        return responses

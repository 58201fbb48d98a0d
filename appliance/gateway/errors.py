"""Errors in OpenAI's shape, ``{"error": {"message", "type", "code", "param"}}``, which every OpenAI client parses."""

from __future__ import annotations

import json

from django.http import HttpResponse

# OpenAI's own error types; clients pick an exception class by the status, the type is informative.
INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
RATE_LIMIT = "rate_limit_error"
UPSTREAM = "upstream_error"
UNAVAILABLE = "service_unavailable"


class GatewayError(Exception):
    """A request the gateway answers itself, before or instead of an upstream's answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,  # the field's name in OpenAI's shape
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def payload(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}

    def response(self) -> HttpResponse:
        response = HttpResponse(json.dumps(self.payload()), status=self.status, content_type="application/json")
        for name, value in self.headers.items():
            response[name] = value
        if self.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="v1"'
        return response


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, message, code=code, param=param)


def unauthorized(message: str = "Invalid, expired or revoked API key.") -> GatewayError:
    return GatewayError(401, message, type=AUTHENTICATION, code="invalid_api_key")


def model_not_found(model: str) -> GatewayError:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return GatewayError(404, message, code="model_not_found", param="model")


def no_upstream(model: str, detail: str = "") -> GatewayError:
    message = f"No healthy engine is serving `{model}` right now{': ' + detail if detail else ''}."
    return GatewayError(503, message, type=UNAVAILABLE, code="no_healthy_upstream", headers={"Retry-After": "5"})

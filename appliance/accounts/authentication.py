from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from appliance.accounts.models import ApiKey, User
from appliance.accounts.services import authenticate_key


class BearerKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer ak_…`` — the integration key created in the console."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header.startswith(f"{self.keyword} "):
            return None
        secret = header[len(self.keyword) + 1 :].strip()
        if not secret:
            raise exceptions.AuthenticationFailed("Empty bearer token.")
        key = authenticate_key(secret)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "appliance.accounts.authentication.BearerKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "API key created in the console (ak_…)."}

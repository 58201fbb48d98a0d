"""Errors raised by services; the API and pages turn them into the stable error shape."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details


class InvalidInput(ServiceError):
    status_code = 400
    code = "invalid"


class PermissionDenied(ServiceError):
    status_code = 403
    code = "permission_denied"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class QuotaExceeded(ServiceError):
    status_code = 409
    code = "quota_exceeded"

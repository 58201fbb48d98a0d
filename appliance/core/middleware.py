from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from appliance.core.clientip import client_ip
from appliance.core.context import RequestContext, new_request_id, reset_context, set_context

__all__ = ["RequestIdMiddleware", "client_ip", "request_id_from"]

# An incoming X-Request-ID is kept only when it looks like an id, so a client cannot inject
# log lines or oversized values into the audit log.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_id_from(incoming: str) -> str:
    """The client's X-Request-ID when it looks like an id, else a new one."""
    return incoming if _VALID_REQUEST_ID.match(incoming) else new_request_id()


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request.headers.get("X-Request-ID", ""))
        via = "api" if request.path.startswith(("/api/", "/v1/")) else "web"
        if request.path.startswith("/django-admin/"):
            via = "admin"
        token = set_context(
            RequestContext(
                request_id=request_id,
                source_ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", "")[:255],
                via=via,
            )
        )
        request.request_id = request_id  # type: ignore[attr-defined]
        try:
            response = self.get_response(request)
        finally:
            reset_context(token)
        response["X-Request-ID"] = request_id
        return response

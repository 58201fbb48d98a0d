"""HTTP request counts and durations by URL pattern (``resolver_match.route``), never by raw path."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from appliance.monitoring.instruments import http_duration, http_requests

UNMATCHED = "unmatched"  # 404s and anything that never reached a view: one label, however many paths


def route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return (match.route or match.view_name or UNMATCHED) if match is not None else UNMATCHED


def observe_http(route: str, method: str, status: int, seconds: float) -> None:
    known = method if method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"} else "other"
    http_requests.labels(route, known, str(status)).inc()
    http_duration.labels(route).observe(seconds)


class MetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        observe_http(route_of(request), request.method or "", response.status_code, time.perf_counter() - started)
        return response

"""The API schema and its browsable docs: behind a login unless ``CONSOLE_API_DOCS_PUBLIC=True``.

``ApiDocsPermission`` is drf-spectacular's ``SERVE_PERMISSIONS``, which it imports while defining its
views, so this module must not import them at load time.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from rest_framework.permissions import BasePermission


class ApiDocsPermission(BasePermission):
    """Read at each request, so the setting takes effect without touching the views."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(settings.API_DOCS_PUBLIC or (request.user and request.user.is_authenticated))


@cache
def _swagger() -> Any:
    # The split view serves its start-up script as a file (``?script``), so the page needs no
    # inline script under the Content-Security-Policy.
    from drf_spectacular.views import SpectacularSwaggerSplitView

    return SpectacularSwaggerSplitView.as_view(url_name="schema")


@cache
def _redoc() -> Any:
    from drf_spectacular.views import SpectacularRedocView

    return SpectacularRedocView.as_view(url_name="schema")


def api_docs(request: HttpRequest) -> HttpResponseBase:
    """Swagger UI; a browser without a session is sent to the login page rather than shown a 401."""
    return _page(request, _swagger())


def api_redoc(request: HttpRequest) -> HttpResponseBase:
    """Redoc, under the same rule as Swagger UI."""
    return _page(request, _redoc())


def _page(request: HttpRequest, view: Any) -> HttpResponseBase:
    if not settings.API_DOCS_PUBLIC and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    response: HttpResponseBase = view(request)
    return response

"""The routes of the URL configuration, enumerated for the authorization matrix.

A route is ``(kind, name, method)``: kind is "api" (a DRF route under /api/v1/, one per action and
method), "page" (the console's pages and other non-API routes) or "ws" (a WebSocket route). Pages are
listed by name; the methods the matrix sends to each come from its expectation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from console.routing import websocket_urlpatterns

Route = tuple[str, str, str]
_IGNORED_METHODS = {"options", "head", "trace"}


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for item in patterns:
        if isinstance(item, URLResolver):
            yield from _walk(item.url_patterns, prefix + str(item.pattern))
        else:
            yield prefix + str(item.pattern), item


def _api_methods(callback: Any) -> list[str]:
    actions = getattr(callback, "actions", None)
    if actions is not None:
        return sorted(m for m in actions if m not in _IGNORED_METHODS)
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if cls is None:
        return ["get"]
    return sorted(m for m in cls.http_method_names if hasattr(cls, m) and m not in _IGNORED_METHODS)


def http_routes() -> Iterator[tuple[str, str, str, str]]:
    """``(kind, name, method-or-*, pattern)`` for every HTTP route; format-suffix twins are skipped."""
    for pattern, item in _walk(get_resolver().url_patterns):
        if "(?P<format>" in pattern:
            continue
        name = item.name or pattern
        if pattern.startswith("api/v1/"):
            for method in _api_methods(item.callback):
                yield "api", name, method, pattern
        else:
            yield "page", name, "*", pattern


def ws_routes() -> Iterator[str]:
    for item in websocket_urlpatterns:
        yield str(item.pattern)

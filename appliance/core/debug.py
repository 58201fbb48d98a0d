"""Django's debug pages for this machine only, whatever ``DEBUG`` says.

With ``CONSOLE_DEBUG=True`` (development) Django answers an error with a page full of source, local
variables and settings, or, for a 404, the list of every URL. A console started for development
may still be reachable from the network, so those pages go to loopback clients only; others get the
plain error page (with the request id, to find the traceback in the log).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.debug import ExceptionReporter

from appliance.core.clientip import is_loopback

# Every page Django's debug views render carries this tag; nothing else of the console does.
_DEBUG_PAGE_MARK = b'<meta name="robots" content="NONE,NOARCHIVE">'


def _hidden(request: Any) -> bool:
    return bool(settings.DEBUG) and request is not None and not is_loopback(request)


def _notice(request: Any) -> str:
    request_id = getattr(request, "request_id", "") or "-"
    return _("Server error (request id %(id)s). Details are in the console's log.") % {"id": request_id}


class LoopbackOnlyExceptionReporter(ExceptionReporter):
    """``DEFAULT_EXCEPTION_REPORTER``: the traceback page, or a plain notice for other machines."""

    def get_traceback_html(self) -> SafeString:
        if _hidden(self.request):
            return format_html(
                "<!doctype html><title>{}</title><h1>{}</h1><p>{}</p>",
                _("Server error"),
                _("Server error"),
                _notice(self.request),
            )
        return super().get_traceback_html()

    def get_traceback_text(self) -> SafeString:
        if _hidden(self.request):
            return SafeString(_notice(self.request))
        return super().get_traceback_text()


class DebugPagesForLoopbackMiddleware:
    """Replaces Django's debug 404 page (the URL list) with the plain one for other machines."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 404 and _hidden(request) and not response.streaming:
            if _DEBUG_PAGE_MARK in response.content[:2048]:
                return defaults.page_not_found(request, exception=None)
        return response

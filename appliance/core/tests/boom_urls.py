"""The console's URLs plus one view that fails, for the debug-page tests."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from console.urls import urlpatterns as console_urlpatterns


def boom(request: HttpRequest) -> HttpResponse:
    secret = "local-variable-secret-4242"  # noqa: F841 - the debug page would show it
    raise ValueError("boom with details")


urlpatterns = [path("boom/", boom), *console_urlpatterns]

"""The URL conf the ASGI fast path resolves against (asgi.py): the gateway's routes under ``v1/``."""

from django.urls import include, path

urlpatterns = [path("v1/", include("appliance.gateway.urls"))]

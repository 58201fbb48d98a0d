from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from appliance.core import health
from appliance.core.api import docs
from appliance.core.api.errors import api_not_found

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/v1/", include("console.api_urls")),
    # The OpenAI-compatible gateway sits at the root, where OpenAI clients put it (base_url …/v1).
    path("v1/", include("appliance.gateway.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", docs.api_docs, name="api-docs"),
    re_path(r"^api/(?P<rest>.*)$", api_not_found, name="api-not-found"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("frontend.urls")),
]

if settings.DJANGO_ADMIN_ENABLED:
    urlpatterns.insert(-1, path("django-admin/", admin.site.urls))

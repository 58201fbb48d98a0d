from csp.decorators import csp_update
from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from appliance.core import health
from appliance.core.api import docs
from appliance.core.api.errors import api_not_found
from appliance.monitoring import views as monitoring

_REDOC = {"style-src": ["'unsafe-inline'"], "worker-src": ["blob:"]}

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", monitoring.metrics, name="metrics"),
    path("metrics/engines", monitoring.engine_targets, name="metrics-engines"),
    path("api/v1/", include("console.api_urls")),
    # The OpenAI-compatible gateway sits at the root, where OpenAI clients put it (base_url …/v1).
    path("v1/", include("appliance.gateway.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI and Redoc from drf-spectacular-sidecar, through the static files (same origin). Redoc
    # styles itself with <style> elements it creates and searches in a worker made from a blob.
    path("api/docs/", docs.api_docs, name="api-docs"),
    path("api/redoc/", csp_update(_REDOC)(docs.api_redoc), name="api-redoc"),
    re_path(r"^api/(?P<rest>.*)$", api_not_found, name="api-not-found"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("sso/", include("appliance.sso.urls")),
    path("", include("frontend.urls")),
]

if settings.DJANGO_ADMIN_ENABLED:
    urlpatterns.insert(-1, path("django-admin/", admin.site.urls))

from csp.decorators import csp_update
from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from appliance.core import health
from appliance.core.api import docs
from appliance.core.api.errors import api_not_found
from appliance.monitoring import views as monitoring

_SWAGGER_CDN = {"script-src": ["https://cdn.jsdelivr.net"], "style-src": ["https://cdn.jsdelivr.net"],
                "img-src": ["https://cdn.jsdelivr.net"]}  # fmt: skip

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", monitoring.metrics, name="metrics"),
    path("metrics/engines", monitoring.engine_targets, name="metrics-engines"),
    path("api/v1/", include("console.api_urls")),
    # The OpenAI-compatible gateway sits at the root, where OpenAI clients put it (base_url …/v1).
    path("v1/", include("appliance.gateway.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI comes from drf-spectacular's CDN default, which this one page may load from.
    path("api/docs/", csp_update(_SWAGGER_CDN)(docs.api_docs), name="api-docs"),
    re_path(r"^api/(?P<rest>.*)$", api_not_found, name="api-not-found"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("frontend.urls")),
]

if settings.DJANGO_ADMIN_ENABLED:
    urlpatterns.insert(-1, path("django-admin/", admin.site.urls))

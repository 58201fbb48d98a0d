"""ASGI entry point: HTTP through Django, WebSockets through Channels with session auth.

Served by granian through ``manage.py serve`` (docs/serving.md); static files by WhiteNoise inside Django.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from appliance.core.clientip import forwarded_scheme  # noqa: E402
from appliance.core.middleware import request_context  # noqa: E402
from appliance.gateway.asgi import gateway_fast_path  # noqa: E402
from console.routing import websocket_urlpatterns  # noqa: E402

# The request context (request id, client address) of every HTTP request and WebSocket connection is set here,
# once, for Django's handler, the gateway's fast path and Channels alike; see appliance/core/middleware.py.
application = request_context(
    ProtocolTypeRouter(
        {
            # /v1/ (the OpenAI-compatible gateway) goes straight to its async views; see appliance/gateway/asgi.py.
            "http": gateway_fast_path(django_asgi_app),
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)
if settings.APPLIANCE_TRUSTED_PROXIES:
    # Behind nginx: the scheme the browser used (https, wss), from trusted proxies only. The client's
    # address is decided by appliance/core/clientip.client_ip, for HTTP requests and the gateway alike.
    application = forwarded_scheme(application)

"""ASGI entry point: HTTP through Django, WebSockets through Channels with session auth."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from appliance.gateway.asgi import gateway_fast_path  # noqa: E402
from appliance.gateway.server import memoise_twisted_content_type  # noqa: E402
from console.routing import websocket_urlpatterns  # noqa: E402

memoise_twisted_content_type()

application = ProtocolTypeRouter(
    {
        # /v1/ (the OpenAI-compatible gateway) goes straight to its async views; see appliance/gateway/asgi.py.
        "http": gateway_fast_path(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

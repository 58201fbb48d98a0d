"""WebSocket routes; each app adds its consumers here."""

from typing import Any

from django.urls import path

from appliance.chat.consumers import ChatConsumer
from appliance.deployments.consumers import LogsConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/deployments/<int:pk>/logs/", LogsConsumer.as_asgi()),
    path("ws/chat/", ChatConsumer.as_asgi()),
]

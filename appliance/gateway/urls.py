"""Mounted at ``/v1/`` (console/urls.py), where OpenAI clients expect it: base_url = http://console/v1."""

from django.urls import path

from appliance.gateway import views

urlpatterns = [
    path("models", views.list_models, name="gateway-models"),
    path("models/<path:model>", views.retrieve_model, name="gateway-model"),
    path("chat/completions", views.chat_completions, name="gateway-chat-completions"),
    path("completions", views.completions, name="gateway-completions"),
    path("<path:rest>", views.unknown_route, name="gateway-unknown"),
]

from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "appliance.gateway"
    label = "gateway"
    verbose_name = "OpenAI-compatible gateway"

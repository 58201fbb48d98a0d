from django.apps import AppConfig


class SafetyConfig(AppConfig):
    name = "appliance.safety"
    label = "safety"
    verbose_name = "Content safety"

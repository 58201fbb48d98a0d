from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "appliance.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"

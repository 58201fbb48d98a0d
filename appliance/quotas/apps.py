from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "appliance.quotas"
    label = "quotas"
    verbose_name = "Quotas and usage"

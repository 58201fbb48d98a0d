from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "appliance.operations"
    label = "operations"
    verbose_name = "Operations (backup, restore, retention)"

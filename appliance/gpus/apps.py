from django.apps import AppConfig


class GpusConfig(AppConfig):
    name = "appliance.gpus"
    label = "gpus"
    verbose_name = "Nodes and GPUs"

from django.apps import AppConfig
from django.conf import settings

from console.env import ConfigError


class GpusConfig(AppConfig):
    name = "appliance.gpus"
    label = "gpus"
    verbose_name = "Nodes and GPUs"

    def ready(self) -> None:
        """A malformed simulated-GPU spec stops the start-up, as a malformed setting does."""
        from appliance.gpus.simulated import parse_spec

        if settings.APPLIANCE_SIMULATED_GPUS:
            try:
                parse_spec(settings.APPLIANCE_SIMULATED_GPUS)
            except ValueError as exc:
                raise ConfigError(f"APPLIANCE_SIMULATED_GPUS: {exc}") from None

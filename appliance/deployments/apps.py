from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "appliance.deployments"
    label = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        from appliance.deployments.services import stop_for_forced_release
        from appliance.gpus.services import register_holder_stopper

        register_holder_stopper(stop_for_forced_release)

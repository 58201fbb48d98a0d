from django.apps import AppConfig


class SsoConfig(AppConfig):
    name = "appliance.sso"
    label = "sso"
    verbose_name = "Directory and single sign-on"

    def ready(self) -> None:
        # The directory sync is a task of this app: registered with Celery when Django starts (worker and beat).
        from appliance.sso import tasks  # noqa: F401

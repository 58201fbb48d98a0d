from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    """Django's admin with the console's site (appliance/core/admin_site.py) as ``admin.site``."""

    default_site = "appliance.core.admin_site.ConsoleAdminSite"

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "appliance.catalog"
    label = "catalog"
    verbose_name = "Model catalog, capacity planner and SKU profiles"

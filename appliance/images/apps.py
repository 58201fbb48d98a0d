from django.apps import AppConfig


class ImagesConfig(AppConfig):
    name = "appliance.images"
    label = "images"
    verbose_name = "Images"

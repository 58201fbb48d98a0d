from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "appliance.chat"
    label = "chat"
    verbose_name = "Chat"

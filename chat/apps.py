from django.apps import AppConfig

from chat.tools import python


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        # The Python functions the registry may run: a bad dotted path fails at start.
        python.discover()

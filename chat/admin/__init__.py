"""Django admin for the chat: assistants with their knowledge, people's threads (read-only),
and limits per person with their usage."""

# Django's autodiscovery imports this package: importing the admin modules registers them.
from chat.admin import assistants, limits, threads  # noqa: F401

"""Django admin for the chat: assistants with their knowledge, and people's threads (read-only)."""

# Django's autodiscovery imports this package: importing the admin modules registers them.
from chat.admin import assistants, threads  # noqa: F401

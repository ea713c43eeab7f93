"""Django admin for the chat: assistants with their knowledge, the function registry and its
calls, and people's threads (read-only)."""

# Django's autodiscovery imports this package: importing the admin modules registers them.
from chat.admin import assistants, functions, threads  # noqa: F401

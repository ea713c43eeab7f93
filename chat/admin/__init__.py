"""Django admin for the chat: assistants with their knowledge, and people's threads (read-only)."""

# Django's autodiscovery imports this package: importing the admin modules registers them.
from django.contrib import admin

from chat.admin import assistants, threads  # noqa: F401

admin.site.site_header = "Threadline administration"
admin.site.site_title = "Threadline administration"
admin.site.index_title = "Assistants, people and their threads"

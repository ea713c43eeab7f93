"""Django admin for the chat: assistants with their knowledge, the function registry and its
calls, MCP servers, people's threads (read-only), people themselves (whose delete removes their
threads on the Assistants API too), and limits per person with their usage."""

# Django's autodiscovery imports this package: importing the admin modules registers them.
from django.contrib import admin

from chat.admin import assistants, functions, limits, mcp_servers, people, threads  # noqa: F401

admin.site.site_header = "Threadline administration"
admin.site.site_title = "Threadline administration"
admin.site.index_title = "Assistants, functions, people and their threads"

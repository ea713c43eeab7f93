"""Django admin for the engine's own records: projects and their API keys."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from engine.models import ApiKey, Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "created_at"]
    readonly_fields = ["id", "created_at"]
    search_fields = ["name", "id"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are generated here and shown once; only their hash is kept."""

    list_display = [
        "name",
        "project",
        "prefix",
        "created_at",
        "last_used_at",
        "status",
        "requests_allowed",
    ]
    list_filter = ["project", "revoked_at"]
    search_fields = ["name", "prefix"]
    fields = [
        "name",
        "project",
        "rate_limit",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="Status")
    def status(self, key: ApiKey) -> str:
        return f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"

    @admin.display(description="Rate limit")
    def requests_allowed(self, key: ApiKey) -> str:
        try:
            rate = key.rate()
        except ValueError:
            return "not a rate: edit it"
        if rate is None:
            return "none"
        return f"{rate}" if key.rate_limit else f"{rate} (default)"

    def save_model(self, request: HttpRequest, key: ApiKey, form: Any, change: bool) -> None:
        plaintext = None if change else key.set_new_key()
        super().save_model(request, key, form, change)
        if plaintext:
            messages.warning(
                request, f"The new key is {plaintext} — copy it now: it is shown only this once."
            )

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s). Clients using them now get a 401.")

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # Revoking keeps the record of who had access; deleting would erase it.
        return False

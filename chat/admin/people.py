"""People in the admin: Django's user admin, whose delete also removes what a person has on the
Assistants API (their threads, with the stores of their attachments, and the files they
attached), after the usual confirmation.

Their conversations go with them (a cascade). The thread admin itself offers no delete: the
remote half is done here, outside the admin's transaction (see the assistant admin).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from chat import assistants_api as api
from chat import conversations
from chat.admin.limits import PersonLimitsInline
from chat.models import AnswerUsage, Conversation, Upload, UsageLimits


def remote_parts(user: User) -> list[str]:
    """What deleting the person removes from the API, as the confirmation page lists it."""
    parts = [
        f"Remote thread: {c.thread_id} ({c.title})"
        for c in Conversation.objects.filter(owner=user).order_by("pk")
    ]
    parts += [f"Remote file: {u.name} ({u.file_id})" for u in Upload.objects.filter(owner=user)]
    return parts


def remove_remote(user: User) -> None:
    """Every thread and attached file of the person, deleted on the API; AssistantsError if one
    cannot be (what was deleted stays deleted; the person stays)."""
    for conversation in Conversation.objects.filter(owner=user).order_by("pk"):
        async_to_sync(conversations.remove_remote)(conversation)


admin.site.unregister(User)


@admin.register(User)
# Generic in django-stubs, not at run time.
class PersonAdmin(UserAdmin):  # type: ignore[type-arg]
    inlines = [*UserAdmin.inlines, PersonLimitsInline]  # their limits, at the end

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Conversations go with their person, whose delete takes care of their remote threads;
        # the thread admin alone offers no delete, which Django would count as "no permission".
        perms_needed.discard(Conversation._meta.verbose_name)
        # Their limits and usage go with them too; usage is read-only in the admin.
        perms_needed.discard(AnswerUsage._meta.verbose_name)
        perms_needed.discard(UsageLimits._meta.verbose_name)
        for user in objs:
            to_delete.extend(remote_parts(user))
        return to_delete, model_count, perms_needed, protected

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The remote parts go first, outside the admin's transaction; the person only if they did.
        if request.method == "POST" and "post" in request.POST:
            user = self.get_object(request, object_id)
            if user is not None and self.has_delete_permission(request, user):
                try:
                    remove_remote(user)
                except api.AssistantsError as error:
                    messages.error(
                        request,
                        f"{user} was not deleted: the Assistants API said: {error} Try again.",
                    )
                    return HttpResponseRedirect(reverse("admin:auth_user_change", args=[user.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        # "Delete selected" runs outside a transaction: remote, then local, person by person.
        for user in queryset:
            try:
                remove_remote(user)
            except api.AssistantsError as error:
                messages.error(request, f"{user} was not deleted: the Assistants API said: {error}")
                continue
            user.delete()

"""The admin's read-only view of people's threads: the transcript as its owner reads it, and
the runs with their tokens and estimated cost, from the Assistants API."""

from __future__ import annotations

from typing import Any, NamedTuple

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET

from chat import assistants_api as api
from chat import conversations, uploads
from chat.models import Conversation
from chat.views import file_response

FIELDS = "admin/chat/conversation/fields.html"


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "assistant", "created_at", "last_activity"]
    list_filter = ["assistant"]
    search_fields = ["title", "owner__username", "thread_id"]
    list_select_related = ["owner", "assistant"]
    date_hierarchy = "updated_at"
    # One sequence for both: a tuple, which type-checks as either (a list would not).
    readonly_fields = (
        "title",
        "owner",
        "assistant",
        "thread_id",
        "created_at",
        "updated_at",
        "transcript",
        "runs",
    )
    fields = readonly_fields

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        own = [
            path(
                "<int:pk>/transcript/",
                view(self.transcript_view),
                name="chat_conversation_transcript",
            ),
            path(
                "<int:pk>/files/<str:file_id>/",
                view(require_GET(self.file_view)),
                name="chat_conversation_file",
            ),
        ]
        return own + super().get_urls()

    def transcript_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The thread as its owner reads it (rendered and sanitised as in the chat), read-only."""
        conversation = get_object_or_404(Conversation, pk=pk)
        if not self.has_view_permission(request, conversation):
            return HttpResponse(status=403)
        context = {**self.admin_site.each_context(request), "conversation": conversation}
        context["opts"] = self.opts
        context["title"] = f"Transcript: {conversation.title}"
        try:
            context["history"] = conversations.history(
                conversation, file_route="admin:chat_conversation_file"
            )
        except api.AssistantsError as error:
            context["history_error"] = str(error)
        return TemplateResponse(request, "admin/chat/conversation/transcript.html", context)

    def file_view(self, request: HttpRequest, pk: int, file_id: str) -> HttpResponseBase:
        """A file the transcript links to, as its owner would open it: only one attached to or
        cited in this conversation's thread; any other is a 404."""
        conversation = get_object_or_404(Conversation, pk=pk)
        if not self.has_view_permission(request, conversation):
            return HttpResponse(status=403)
        # The admin's views are sync; the file streams from the API on the server's event loop
        # (under ASGI, async_to_sync runs there), as the owner's route streams it.
        return async_to_sync(conversation_file)(conversation, file_id)

    @admin.display(description="transcript")
    def transcript(self, conversation: Conversation) -> SafeString:
        return render_to_string(f"{FIELDS}#transcript_link", {"conversation": conversation})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting here would leave the remote thread behind; people delete their own threads.
        return False

    @admin.display(description="last activity")
    def last_activity(self, conversation: Conversation) -> Any:
        return conversation.updated_at

    @admin.display(description="runs (from the Assistants API)")
    def runs(self, conversation: Conversation) -> SafeString:
        try:
            runs = [run_row(run) for run in api.thread_runs(conversation.thread_id)]
        except api.AssistantsError as error:
            return render_to_string(f"{FIELDS}#runs", {"error": str(error)})
        return render_to_string(f"{FIELDS}#runs", {"runs": runs})


async def conversation_file(conversation: Conversation, file_id: str) -> HttpResponseBase:
    return await file_response(await uploads.file_in(conversation, file_id), file_id)


class RunRow(NamedTuple):
    """One run as the table shows it."""

    id: str
    model: str
    status: str
    duration: str
    tokens: str  # in / out
    cost: str  # estimated from the price setting
    error: str  # why it failed, in the API's (and the model provider's) own words


def run_row(run: dict[str, Any]) -> RunRow:
    started = run.get("started_at")
    ended = run.get("completed_at") or run.get("failed_at") or run.get("cancelled_at")
    ended = ended or run.get("expired_at")
    duration = f"{ended - started:.0f} s" if started and ended else "-"
    usage = run.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    tokens = f"{prompt:,} / {completion:,}" if prompt is not None else "-"
    return RunRow(
        str(run.get("id", "")),
        str(run.get("model", "")),
        str(run.get("status", "")),
        duration,
        tokens,
        estimated_cost(str(run.get("model", "")), prompt, completion),
        str((run.get("last_error") or {}).get("message") or ""),
    )


def estimated_cost(model: str, prompt: int | None, completion: int | None) -> str:
    prices = settings.MODEL_PRICES.get(model) if isinstance(settings.MODEL_PRICES, dict) else None
    if not prices or prompt is None or completion is None:
        return "-"
    try:
        input_price, output_price = (float(p) for p in prices)
    except (TypeError, ValueError):
        return "-"  # a price setting of the wrong shape: no estimate rather than an error
    cost = (prompt * input_price + completion * output_price) / 1_000_000
    return f"${cost:.4f}"

"""The assistant admin: assistant profiles with their knowledge, synced to the Assistants API.

Thin on purpose: the remote work is in `assistant_sync` (and reads in `assistants_api`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from chat import assistants_api as api
from chat import model_catalog
from chat.admin import assistant_sync
from chat.admin.forms import ASSISTANT_ID, AssistantProfileForm, LookedUp, SuggestingInput
from chat.middleware import too_large_uploads
from chat.models import AssistantProfile, KnowledgeFile
from chat.uploads import human_size

FIELDS = "admin/chat/assistantprofile/fields.html"
OFFLINE_HELP = (
    "No model API is configured, so every model name is answered by the offline retrieval "
    "model, which quotes the assistant's documents."
)
ONLINE_HELP = (
    "The configured model API's models are suggested; threadline-retrieval always selects the "
    "offline retrieval model, which quotes the assistant's documents."
)
CODE_STATUS_KEY = "chat:admin:code-interpreter-status"
CODE_STATUS_SECONDS = 60
LOOKUPS_ATTRIBUTE = "_threadline_lookups"


def remembered_lookups(request: HttpRequest) -> dict[str, LookedUp]:
    lookups: dict[str, LookedUp] | None = getattr(request, LOOKUPS_ATTRIBUTE, None)
    if lookups is None:
        lookups = {}
        setattr(request, LOOKUPS_ATTRIBUTE, lookups)
    return lookups


def lookup_ahead(assistant_id: str | None) -> LookedUp:
    """The remote assistant a new profile names, asked before the save's transaction; the form
    checks the answer (AssistantProfileForm.clean_assistant_id)."""
    value = (assistant_id or "").strip()
    if not value or not ASSISTANT_ID.match(value):
        return LookedUp(value, None, None)
    try:
        return LookedUp(value, assistant_sync.remote(value), None)
    except api.AssistantsError as error:
        return LookedUp(value, None, error)


@admin.register(AssistantProfile)
class AssistantProfileAdmin(admin.ModelAdmin):
    form = AssistantProfileForm
    change_list_template = "admin/chat/assistantprofile/change_list.html"
    list_display = ["name", "model", "published", "sync_state", "assistant_id", "updated_at"]
    list_filter = ["published", "file_search"]
    search_fields = ["name", "description", "model"]
    actions = ["sync_now"]
    readonly_fields = ["sync_status", "knowledge_panel", "code_interpreter_status"]
    fieldsets = [
        (None, {"fields": ["name", "description", "published", "groups"]}),
        (
            "Behaviour",
            {
                "fields": [
                    "model",
                    "instructions",
                    ("temperature", "top_p"),
                    "response_format",
                ]
            },
        ),
        (
            "Tools",
            {
                "fields": [
                    "file_search",
                    "code_interpreter",
                    "code_interpreter_status",
                    "registry_functions",
                    "functions",
                ]
            },
        ),
        ("Knowledge", {"fields": ["knowledge_panel", "knowledge_files"]}),
        ("Remote assistant", {"fields": ["metadata", "assistant_id", "sync_status"]}),
    ]

    class Media:
        js = ["chat/admin.js"]
        css = {"all": ["chat/admin.css"]}

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Django saves inside a transaction, which on SQLite holds the database's write lock
        # until the page is answered; the embedded engine, writing to the same database, would
        # wait for it. So what the page needs from the API is asked first (and nothing is asked
        # in there: the knowledge panel shows the states it has, the save syncs once committed).
        if request.method == "POST":
            model_catalog.models()  # remembered for a minute: the form's widget finds it there
            if object_id is None:
                remembered_lookups(request)[""] = lookup_ahead(request.POST.get("assistant_id"))
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        extra = {
            # The files the upload handler skipped (chat.middleware) are reported at their field.
            "too_large": too_large_uploads(request),
            # The remote assistant a new profile takes over, looked up before the transaction.
            "looked_up": remembered_lookups(request).get(""),
        }
        return type(form.__name__, (form,), extra)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Sync fills the remote id in; once a profile exists, another id would orphan the
        # remote assistant it has. A new profile may name one to take over (the form checks).
        fixed = ["assistant_id"] if obj is not None else []
        return [*super().get_readonly_fields(request, obj), *fixed]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "model":
            # The API's models, remembered for a minute (chat.model_catalog), so a slow API
            # slows one admin page a minute, not every one.
            kwargs["widget"] = SuggestingInput(model_catalog.names())
            kwargs["help_text"] = (
                ONLINE_HELP if model_catalog.language_model_listed() else OFFLINE_HELP
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    # --- List columns and read-only fields --------------------------------------------------------

    @admin.display(description="sync")
    def sync_state(self, profile: AssistantProfile) -> SafeString:
        return render_to_string(f"{FIELDS}#sync_state", {"profile": profile})

    @admin.display(description="sync status")
    def sync_status(self, profile: AssistantProfile) -> SafeString:
        return render_to_string(f"{FIELDS}#sync_status", {"profile": profile})

    @admin.display(description="Knowledge files")
    def knowledge_panel(self, profile: AssistantProfile) -> str:
        if profile.pk is None:
            return "Add files below: they go in when the assistant is saved."
        if transaction.get_connection().in_atomic_block:
            # A save's form shown again: no API call inside its transaction (changeform_view);
            # the states known here, which the page's poll soon refreshes.
            return knowledge_panel(profile, list(profile.knowledge.all()))
        return knowledge_panel(profile, assistant_sync.refresh(profile, save=False))

    @admin.display(description="Code interpreter on the server")
    def code_interpreter_status(self, profile: AssistantProfile) -> str:
        # Not asked inside a save's transaction (changeform_view): what is remembered, if any.
        return code_interpreter_note(ask=not transaction.get_connection().in_atomic_block)

    # --- Saving: locally first, then to the API ---------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # Once, when the name is set; and only where a model API is there to not know it.
        if "model" in form.changed_data and model_catalog.unknown(obj.model):
            messages.warning(
                request,
                f"The model API does not list a model called {obj.model!r}. It was kept; "
                "runs will fail if the model API does not know it either.",
            )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if form.mirrored is not None:
            # In the same transaction as the profile: the knowledge it takes over, as listed.
            assistant_sync.adopt_knowledge(form.instance, form.mirrored)
        # The admin saves inside a transaction; the API is reached once it is committed. That
        # keeps what was entered whatever the API does, and the embedded engine, which writes
        # to the same database, never waits for this request's lock (SQLite).
        transaction.on_commit(lambda: self.sync_saved(request, form))

    def sync_saved(self, request: HttpRequest, form: Any) -> None:
        profile = form.instance
        # Kept here first: if the API refuses or is away, the files wait for "Sync now".
        kept = assistant_sync.keep_files(profile, form.checked_files)
        for problem in kept.problems:
            messages.error(request, f"{problem} Add it again once the disk has room.")
        synced = assistant_sync.sync(profile)
        if synced.error:
            messages.error(
                request,
                f"Saved here, but not on the Assistants API, which said: {synced.error} "
                'The assistant is marked out of sync; "Sync now" retries.',
            )
        if synced.uploaded:
            messages.info(
                request,
                f"Added {len(synced.uploaded)} knowledge file(s); they are being read now.",
            )
        report_waiting(request, profile, synced)

    @admin.action(description="Sync now with the Assistants API")
    def sync_now(self, request: HttpRequest, queryset: QuerySet[AssistantProfile]) -> None:
        done = 0
        for profile in queryset:
            synced = assistant_sync.sync(profile)
            if synced.error:
                messages.error(request, f"{profile.name}: the Assistants API said: {synced.error}")
            elif not synced.waiting:
                done += 1
            if synced.uploaded:
                messages.info(
                    request,
                    f"{profile.name}: uploaded {len(synced.uploaded)} knowledge file(s); "
                    "they are being read now.",
                )
            report_waiting(request, profile, synced)
        if done:
            messages.success(request, f"Synced {done} assistant(s).")

    # --- Deleting: the remote parts go too --------------------------------------------------------

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        for profile in objs:
            to_delete.extend(assistant_sync.remote_parts(profile).describe())
        return to_delete, model_count, perms_needed, protected

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The remote parts go first, outside the admin's transaction (see save_related); the
        # row goes only if they did.
        if request.method == "POST" and "post" in request.POST:
            profile = self.get_object(request, object_id)
            if profile is not None and self.has_delete_permission(request, profile):
                try:
                    assistant_sync.remove_remote(profile)
                except api.AssistantsError as error:
                    messages.error(
                        request,
                        f"{profile} was not deleted: the Assistants API said: {error} Try again.",
                    )
                    return HttpResponseRedirect(
                        reverse("admin:chat_assistantprofile_change", args=[profile.pk])
                    )
        return super().delete_view(request, object_id, extra_context)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AssistantProfile]) -> None:
        # The "delete selected" action runs outside a transaction: remote, then local, each.
        for profile in queryset:
            try:
                assistant_sync.delete(profile)
            except api.AssistantsError as error:
                messages.error(
                    request, f"{profile} was not deleted: the Assistants API said: {error}"
                )

    # --- Knowledge and import: small views of their own -------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        own = [
            path(
                "import/",
                view(require_POST(self.import_view)),
                name="chat_assistantprofile_import",
            ),
            path(
                "<int:pk>/knowledge/",
                view(self.knowledge_view),
                name="chat_assistantprofile_knowledge",
            ),
            path(
                "<int:pk>/knowledge/<int:file_pk>/<str:verb>/",
                view(require_POST(self.knowledge_file_view)),
                name="chat_assistantprofile_knowledge_file",
            ),
        ]
        return own + super().get_urls()

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            return HttpResponse(status=403)
        try:
            made = assistant_sync.import_remote()
        except api.AssistantsError as error:
            messages.error(request, f"Nothing imported: the Assistants API said: {error}")
        else:
            if made:
                names = ", ".join(p.name for p in made)
                messages.success(request, f"Imported {len(made)} assistant(s): {names}.")
            else:
                messages.info(request, "Every assistant on the API already has a row here.")
        return HttpResponseRedirect(reverse("admin:chat_assistantprofile_changelist"))

    def knowledge_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The knowledge list alone, for the page's poll while files are being read."""
        profile = get_object_or_404(AssistantProfile, pk=pk)
        if not self.has_view_or_change_permission(request, profile):
            return HttpResponse(status=403)
        return HttpResponse(knowledge_panel(profile, assistant_sync.refresh(profile)))

    def knowledge_file_view(self, request: HttpRequest, pk: int, file_pk: int, verb: str) -> Any:
        file = get_object_or_404(KnowledgeFile, pk=file_pk, profile_id=pk)
        change_url = reverse("admin:chat_assistantprofile_change", args=[pk])
        if not self.has_change_permission(request, file.profile) or verb not in {
            "remove",
            "reindex",
        }:
            return HttpResponse(status=403)
        if verb == "reindex" and file.waiting:
            messages.error(
                request, f'{file.name} is not uploaded yet: "Sync now" or saving uploads it.'
            )
            return HttpResponseRedirect(change_url)
        try:
            if verb == "remove":
                assistant_sync.remove_file(file)
                messages.success(request, f"Removed {file.name} from the knowledge.")
            else:
                assistant_sync.reindex(file)
                messages.success(request, f"{file.name} is being read again.")
        except api.AssistantsError as error:
            messages.error(request, f"{file.name}: the Assistants API said: {error}")
        return HttpResponseRedirect(change_url)


def report_waiting(
    request: HttpRequest, profile: AssistantProfile, synced: assistant_sync.Synced
) -> None:
    if not synced.waiting:
        return
    reasons = "; ".join(f"{f.name}: {f.last_error}" for f in synced.waiting)
    messages.warning(
        request,
        f"{profile.name}: {len(synced.waiting)} knowledge file(s) are kept here, waiting to "
        f'upload ({reasons}). "Sync now" or saving again uploads them.',
    )


def knowledge_panel(profile: AssistantProfile, files: list[KnowledgeFile]) -> SafeString:
    """The knowledge list; it asks for itself again (static/chat/admin.js) while one is read."""
    processing = any(f.status == KnowledgeFile.Status.IN_PROGRESS for f in files)
    poll_url = reverse("admin:chat_assistantprofile_knowledge", args=[profile.pk])
    context = {
        "profile": profile,
        "rows": [knowledge_row(profile, file) for file in files],
        "poll_url": poll_url if processing else "",
    }
    return render_to_string(f"{FIELDS}#knowledge", context)


@dataclass(frozen=True)
class KnowledgeRow:
    """One knowledge file as the panel lists it."""

    file: KnowledgeFile
    size: str
    detail: str  # what a ready file holds: ", 19 pages, 42 chunks, 1.2 MB indexed"
    remove_url: str
    reindex_url: str  # "" while the file waits to upload: nothing to re-index yet


def knowledge_row(profile: AssistantProfile, file: KnowledgeFile) -> KnowledgeRow:
    def url(verb: str) -> str:
        return reverse(
            "admin:chat_assistantprofile_knowledge_file", args=[profile.pk, file.pk, verb]
        )

    counts = [
        f"{count:,} {noun}{'' if count == 1 else 's'}"
        for count, noun in ((file.pages, "page"), (file.chunks, "chunk"))
        if count is not None
    ]
    if file.usage_bytes:
        counts.append(f"{human_size(file.usage_bytes)} indexed")
    return KnowledgeRow(
        file=file,
        size=human_size(file.size),
        detail=", " + ", ".join(counts) if counts else "",
        remove_url=url("remove"),
        reindex_url="" if file.waiting else url("reindex"),
    )


def code_interpreter_note(ask: bool) -> str:
    """Whether the API's server can run code, in words, remembered for a minute."""
    status = cache.get(CODE_STATUS_KEY)
    if status is None and ask:
        found = api.code_interpreter_status()
        status = list(found) if found is not None else ["unknown", ""]
        cache.set(CODE_STATUS_KEY, status, CODE_STATUS_SECONDS)
    if status is None or status[0] == "unknown":
        return "The Assistants API server does not say whether it can run code."
    available, detail = status
    if available:
        return f"Available: {detail}."
    return (
        f"Unavailable: {detail}. Runs of assistants with code interpreter get an error output "
        "saying so; no code runs."
    )

"""The chat's pages and forms: thin views over `conversations`, `uploads` and the templates.

Views that touch a conversation load it with `access.conversation_for` (id and owner, else 404).
The views that wait on the Assistants API for long, or start a streaming run, are async; the
rest are plain sync views.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from chat import assistants_api as api
from chat import conversations, uploads
from chat.access import aconversation_for, assistants_for, conversation_for, conversations_of
from chat.forms import EditForm, RenameForm, SignupForm, Submission, read_submission
from chat.live.answer import RunView
from chat.models import Conversation
from chat.rendering import dom_id
from chat.tools import actions, mcp_secrets, recovery, rounds

PAGE = "chat/conversation.html"
THREAD_LIST_SIZE = 100


class HtmxHttpRequest(HttpRequest):
    """A request as django-htmx's middleware leaves it (the typing django-htmx documents)."""

    htmx: HtmxDetails


class SignedInRequest(HtmxHttpRequest):
    """A request that @login_required let through: its user is a person, never anonymous."""

    user: User
    auser: Callable[[], Awaitable[User]]


@dataclass
class Composer:
    """The message box as the template shows it."""

    action: str
    text: str = ""
    errors: list[str] = field(default_factory=list)
    running: bool = False
    conversation: Conversation | None = None
    assistants: list[Any] = field(default_factory=list)
    assistant_id: int | None = None
    limits: str = field(default_factory=uploads.limits_text)
    accept: str = uploads.CHAT_ACCEPT
    max_chars: int = field(default_factory=lambda: settings.CHAT_MAX_MESSAGE_CHARS)
    max_bytes: int = field(default_factory=lambda: settings.CHAT_MAX_UPLOAD_BYTES)
    max_files: int = field(default_factory=lambda: settings.CHAT_MAX_FILES)

    @property
    def max_chars_text(self) -> str:
        return f"{self.max_chars:,}"


def composer_for(
    user: User, conversation: Conversation | None, submission: Submission | None = None
) -> Composer:
    if conversation is None:
        composer = Composer(action=reverse("chat:send_new"))
        composer.assistants = list(assistants_for(user))
        chosen = submission.profile if submission else None
        composer.assistant_id = chosen.pk if chosen else None
    else:
        composer = Composer(action=reverse("chat:send", args=[conversation.pk]))
        composer.conversation = conversation
        composer.running = bool(conversation.active_run_id)
    if submission is not None:
        composer.text = submission.text
        composer.errors = submission.errors
    return composer


def live_run(conversation: Conversation | None) -> RunView | None:
    if conversation is None or not conversation.active_run_id:
        return None
    return RunView.started(conversation.pk, conversation.active_run_id)


def page_context(
    request: SignedInRequest, conversation: Conversation | None, **extra: Any
) -> dict[str, Any]:
    search = request.GET.get("q", "")
    return {
        "conversation": conversation,
        # The most recent; search finds the rest.
        "conversations": conversations_of(request.user, search)[:THREAD_LIST_SIZE],
        "search": search,
        "composer": composer_for(request.user, conversation),
        "live": live_run(conversation),
        **extra,
    }


# --- Pages ----------------------------------------------------------------------------------------


@login_required
@require_GET
def home(request: SignedInRequest) -> HttpResponse:
    """A new chat: the assistant picker and an empty message box."""
    return render(request, PAGE, page_context(request, None))


@login_required
@require_GET
def conversation_page(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    conversation = conversation_for(request.user, conversation_id)
    conversations.forget_lost_run(conversation)
    older_than = request.GET.get("older") or None
    try:
        history = conversations.history(conversation, older_than)
    except conversations.BadCursor:
        # A hand-made or stale link: say so, over the latest messages.
        return older_refused(request, conversation)
    except api.AssistantsError as error:
        context = page_context(request, conversation, history=None, history_error=str(error))
        return render(request, PAGE, context, status=503)
    if request.htmx and older_than:
        return render(request, f"{PAGE}#older", {"conversation": conversation, "history": history})
    return render(request, PAGE, page_context(request, conversation, history=history))


def older_refused(request: SignedInRequest, conversation: Conversation) -> HttpResponse:
    error = "That link to older messages does not point into this thread."
    if request.htmx:
        return HttpResponse(error, status=400, content_type="text/plain; charset=utf-8")
    try:
        history = conversations.history(conversation)
    except api.AssistantsError as history_error:
        context = page_context(request, conversation, history_error=str(history_error))
    else:
        context = page_context(request, conversation, history=history)
    context["errors"] = [error]
    return render(request, PAGE, context, status=400)


@login_required
@require_GET
def thread_list(request: SignedInRequest) -> HttpResponse:
    """The thread list, filtered by the search box."""
    return render(request, f"{PAGE}#thread_list", page_context(request, None))


# --- Sending --------------------------------------------------------------------------------------


@csrf_exempt  # checked by `_send`, once the upload handlers are in place
@login_required
@require_POST
async def send(request: SignedInRequest, conversation_id: int | None = None) -> HttpResponse:
    # Before anything reads the body: files over the limit are skipped, never stored whole.
    request.upload_handlers.insert(0, uploads.LimitedUploadHandler(request))
    # Parsing a large multipart body is blocking work; keep it off the event loop.
    await sync_to_async(lambda: request.POST)()
    return await _send(request, conversation_id)


@csrf_protect
async def _send(request: SignedInRequest, conversation_id: int | None) -> HttpResponse:
    user = await request.auser()
    conversation = await aconversation_for(user, conversation_id) if conversation_id else None
    submission = await sync_to_async(read_submission)(request, user, conversation is None)
    if submission.errors:
        return await composer_response(request, user, conversation, submission)
    try:
        sent = await conversations.send(
            user, conversation, submission.profile, submission.text, submission.files
        )
    except conversations.Refused as refused:
        submission.errors.append(str(refused))
        return await composer_response(request, user, conversation, submission)
    url = reverse("chat:conversation", args=[sent.conversation.pk])
    if not request.htmx:
        return redirect(url)
    if conversation is None:
        return await new_conversation_response(request, sent, url)
    return await sync_to_async(render)(
        request,
        f"{PAGE}#sent",
        {
            "composer": composer_for(user, sent.conversation),
            "message": sent.message,
            "live": RunView.started(sent.conversation.pk, sent.run_id),
            "conversation": sent.conversation,
        },
    )


async def new_conversation_response(
    request: SignedInRequest, sent: conversations.Sent, url: str
) -> HttpResponse:
    """The new thread's whole page, in place of the new-chat page, without a second request."""

    def build() -> HttpResponse:
        assert sent.message is not None
        history = conversations.History([sent.message], older=None)
        context = page_context(request, sent.conversation, history=history, as_fragment=True)
        context["live"] = RunView.started(sent.conversation.pk, sent.run_id)
        response = render(request, f"{PAGE}#app", context)
        response["HX-Retarget"] = "#app"
        response["HX-Reswap"] = "outerHTML"
        response["HX-Push-Url"] = url
        return response

    return await sync_to_async(build)()


async def composer_response(
    request: SignedInRequest,
    user: User,
    conversation: Conversation | None,
    submission: Submission,
) -> HttpResponse:
    """The message box again, with the person's text and what was wrong."""

    def build() -> HttpResponse:
        composer = composer_for(user, conversation, submission)
        if request.htmx:
            return render(request, f"{PAGE}#composer", {"composer": composer})
        context = page_context(request, conversation, composer=composer)
        if conversation is not None:
            try:
                context["history"] = conversations.history(conversation)
            except api.AssistantsError as error:
                context["history_error"] = str(error)
        return render(request, PAGE, context)

    return await sync_to_async(build)()


async def problem_response(
    request: SignedInRequest, conversation: Conversation, error: str
) -> HttpResponse:
    """Why an action on the conversation failed, shown above its messages."""

    def build() -> HttpResponse:
        if request.htmx:
            response = render(request, f"{PAGE}#alerts", {"errors": [error]})
            response["HX-Retarget"] = "#alerts"
            response["HX-Reswap"] = "outerHTML"
            return response
        context = page_context(request, conversation, errors=[error])
        try:
            context["history"] = conversations.history(conversation)
        except api.AssistantsError as history_error:
            context["history_error"] = str(history_error)
        return render(request, PAGE, context)

    return await sync_to_async(build)()


@login_required
@require_POST
async def retry(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    user = await request.auser()
    conversation = await aconversation_for(user, conversation_id)
    try:
        sent = await conversations.retry(user, conversation)
    except conversations.Refused as refused:
        return await problem_response(request, conversation, str(refused))
    if not request.htmx:
        return redirect("chat:conversation", conversation.pk)
    return await sync_to_async(render)(
        request,
        f"{PAGE}#restarted",
        {
            "composer": composer_for(user, sent.conversation),
            "live": RunView.started(sent.conversation.pk, sent.run_id),
        },
    )


@login_required
@require_POST
async def regenerate(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    """The newest answer, written again: the old one is removed, a new run starts."""
    user = await request.auser()
    conversation = await aconversation_for(user, conversation_id)
    try:
        sent = await conversations.regenerate(user, conversation, request.POST.get("message", ""))
    except conversations.Refused as refused:
        return await problem_response(request, conversation, str(refused))
    if not request.htmx:
        return redirect("chat:conversation", conversation.pk)
    return await sync_to_async(render)(
        request,
        f"{PAGE}#restarted",
        {
            "composer": composer_for(user, sent.conversation),
            "live": RunView.started(sent.conversation.pk, sent.run_id),
            "removed": [dom_id(message_id) for message_id in sent.removed],
        },
    )


@login_required
@require_POST
async def edit(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    """One of the person's messages, changed: it and what followed are replaced, and answered."""
    user = await request.auser()
    conversation = await aconversation_for(user, conversation_id)
    form = EditForm(request.POST)
    if not form.is_valid():
        errors = [str(error) for errors in form.errors.values() for error in errors]
        return await problem_response(request, conversation, " ".join(errors))
    try:
        await conversations.edit(
            user, conversation, form.cleaned_data["message"], form.cleaned_data["text"]
        )
    except conversations.Refused as refused:
        return await problem_response(request, conversation, str(refused))
    # The page is loaded again: from the edited message on, everything on it has changed.
    url = reverse("chat:conversation", args=[conversation.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_POST
async def stop(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    user = await request.auser()
    conversation = await aconversation_for(user, conversation_id)
    try:
        await conversations.stop(conversation)
    except conversations.Refused as refused:
        return await problem_response(request, conversation, str(refused))
    if not request.htmx:
        return redirect("chat:conversation", conversation.pk)
    # The live stream shows the run ending; nothing else changes here.
    return HttpResponse(status=204)


# --- Function calls that wait on the person -------------------------------------------------------


@login_required
@require_POST
async def call(
    request: SignedInRequest, conversation_id: int, run_id: str, call_id: str
) -> HttpResponse:
    """Allow, deny or answer a function call of the conversation's run (chat.tools.actions)."""
    user = await request.auser()
    conversation = await aconversation_for(user, conversation_id)
    done = await sync_to_async(actions.act)(conversation, run_id, call_id, request.POST)
    if not done.message:
        await rounds.notify(run_id)
        await recovery.sweep()  # the run's relay may have died: take its calls over now
    if not request.htmx:
        if done.message:
            return await problem_response(request, conversation, done.message)
        return redirect("chat:conversation", conversation.pk)
    return await sync_to_async(render)(
        request, "chat/run.html#card", {"card": done.card, "card_message": done.message}
    )


# --- Renaming and deleting ------------------------------------------------------------------------


@login_required
@require_POST
def rename(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    conversation = conversation_for(request.user, conversation_id)
    form = RenameForm(request.POST)
    if form.is_valid():
        conversations.rename(conversation, form.cleaned_data["title"])
    if not request.htmx:
        return redirect("chat:conversation", conversation.pk)
    return render(request, f"{PAGE}#renamed", {"conversation": conversation})


@login_required
@require_GET
def title(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    """The header and the list entry again: what the page asks while the model writes a title."""
    conversation = conversation_for(request.user, conversation_id)
    return render(request, f"{PAGE}#renamed", {"conversation": conversation})


@login_required
@require_POST
async def delete(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    user = await request.auser()
    conversation = await aconversation_for(user, conversation_id)
    try:
        await conversations.delete(conversation)
    except conversations.Refused as refused:
        return await problem_response(request, conversation, str(refused))
    home_url = reverse("chat:home")
    return HttpResponseClientRedirect(home_url) if request.htmx else redirect(home_url)


# --- Files ----------------------------------------------------------------------------------------


@login_required
@require_GET
async def file(request: SignedInRequest, conversation_id: int, file_id: str) -> HttpResponseBase:
    """A file of the conversation, streamed from the API: PDFs and images open in the browser,
    anything else downloads, and none of it can run script on this site."""
    user = await request.auser()
    found = await uploads.file_for(user, conversation_id, file_id)
    return await file_response(found, file_id)


async def file_response(found: uploads.Downloadable, file_id: str) -> HttpResponseBase:
    """The file streamed from the API, once `found` says who may have it (the admin's too)."""
    chunks = api.file_content(file_id)
    try:
        head = await anext(chunks, b"")
    except api.NotFound:
        raise Http404("No such file.") from None
    except api.AssistantsError as error:
        await chunks.aclose()
        return HttpResponse(str(error), status=503, content_type="text/plain; charset=utf-8")
    inline_type = uploads.sniff_type(head)

    async def body() -> AsyncIterator[bytes]:
        try:
            yield head
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    response = StreamingHttpResponse(body(), content_type=inline_type or "application/octet-stream")
    disposition = content_disposition_header(inline_type is None, found.name)
    if disposition is not None:  # None only for a nameless file shown inline
        response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    if inline_type != uploads.PDF:
        # Browsers' PDF viewers refuse sandboxed documents; everything else gets the sandbox,
        # which the page policy (config/settings.py) leaves in place.
        response["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src 'self'"
    else:
        # Nor do they work under the page policy (no plugins): the PDF viewer runs apart from
        # the page, and a PDF cannot script this site. What django-csp's csp_exempt() sets.
        response._csp_exempt = True  # type: ignore[attr-defined]
    return response


# --- Accounts -------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def settings_page(request: SignedInRequest) -> HttpResponse:
    """The person's own settings: their keys for MCP servers (chat.tools.mcp_secrets)."""
    if request.method == "POST":
        server = request.POST.get("server", "")
        if request.POST.get("action") == "forget":
            mcp_secrets.forget(request.user, server)
            messages.success(request, "Your key was removed.")
        else:
            problem = mcp_secrets.save(request.user, server, request.POST.get("secret", ""))
            if problem:
                messages.error(request, problem)
            else:
                messages.success(request, "Your key was saved.")
        return redirect("chat:settings")
    return render(request, "chat/settings.html", {"entries": mcp_secrets.entries_for(request.user)})


def signup(request: HttpRequest) -> HttpResponse:
    if not settings.SIGNUP_ENABLED:
        raise Http404("Sign-up is off.")
    if request.user.is_authenticated:
        return redirect("chat:home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:home")
    return render(request, "chat/signup.html", {"form": form})

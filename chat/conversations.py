"""What people do with their conversations: send, retry, regenerate, edit, stop, read, rename,
delete.

Each workflow either happens whole or leaves nothing behind: if the Assistants API fails half
way through a send, what was already created remotely (thread, files, message) is removed again
and `Refused` says why, so the page can keep the person's text and show the reason.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from chat import assistants_api as api
from chat import remote_assistant, search, uploads
from chat.access import may_use
from chat.limits import admission
from chat.live import relay, replay
from chat.live.answer import RunView, images_shown
from chat.models import AssistantProfile, Conversation, Upload
from chat.rendering import OWNER_FILES, MessageView, cited_file_ids, message_view
from chat.titles import plain_title
from chat.tools import rounds
from chat.tools.history import steps_by_message
from chat.uploads import CheckedFile

log = logging.getLogger(__name__)

BUSY = "The assistant is still answering. Wait until it has finished, or press Stop."
STALE = "The conversation has changed since this page was loaded. Reload it and try again."


def busy_unseen() -> str:
    """Busy with a run this chat is not relaying (its process died): there is no Stop to press.
    The embedded engine ends such a run THREADLINE_RUN_STALE_SECONDS after its worker last
    reported; another Assistants server, about as soon, one hopes."""
    return (
        "This thread is still busy with an earlier answer that was interrupted (the server "
        "restarted, say) and is being closed. It is free again within "
        f"{settings.RUN_STALE_SECONDS} seconds; send then."
    )


GONE = "This conversation's assistant is no longer available. Start a new chat to go on."
PAGE_SIZE = 20


class Refused(Exception):
    """Nothing was done; the message says why, for the person who asked."""


# --- Assistants -----------------------------------------------------------------------------------


async def current_assistant(profile: AssistantProfile) -> str:
    """The remote assistant's id, created or brought up to date first if the profile changed."""
    if not profile.needs_sync():
        return profile.assistant_id
    return await sync_to_async(remote_assistant.save)(profile)


# --- Sending --------------------------------------------------------------------------------------


@dataclass
class Sent:
    conversation: Conversation
    run_id: str
    message: MessageView | None  # the person's message as the page shows it; None for a retry
    removed: list[str] = field(default_factory=list)  # messages taken away (regenerate, edit)


async def send(
    user: User,
    conversation: Conversation | None,
    profile: AssistantProfile | None,
    text: str,
    files: list[CheckedFile],
) -> Sent:
    """Add the person's message (and files) and start the answer; the relay streams it."""
    if conversation is not None:
        profile = conversation.assistant
        await ensure_idle(conversation)
    if profile is None or not await sync_to_async(may_use)(user, profile):
        raise Refused(GONE if conversation is not None else "Choose an assistant.")
    async with counted(user, sum(file.size for file in files)) as usage_id:
        return await send_admitted(user, conversation, profile, text, files, usage_id)


async def send_admitted(
    user: User,
    conversation: Conversation | None,
    profile: AssistantProfile,
    text: str,
    files: list[CheckedFile],
    usage_id: int,
) -> Sent:
    assistant_id = await usable(current_assistant(profile))
    thread_id = conversation.thread_id if conversation else None
    uploaded: dict[str, CheckedFile] = {}
    if files:
        tools = tools_for(profile, files)
        started, message, uploaded = await send_with_files(
            thread_id, assistant_id, text, files, tools
        )
        said_as = str(message["id"])
    else:
        # One request adds the message and starts the run (on a new thread, if need be): the
        # API does both or neither.
        said_as = search.new_key()
        try:
            started = await api.start_run(
                thread_id, assistant_id, text, metadata={search.METADATA_KEY: said_as}
            )
        except api.AssistantsError as error:
            busy = thread_id is not None and await is_busy(thread_id)
            raise Refused(busy_unseen() if busy else str(error)) from error
        message = {
            "id": f"sent-{started.run_id}",
            "role": "user",
            "content": [{"type": "text", "text": {"value": text}}],
        }
    conversation = await sync_to_async(record_send)(
        user, conversation, profile, started.thread_id, text, started.run_id, uploaded, usage_id
    )
    names = {file_id: file.name for file_id, file in uploaded.items()}
    launch(conversation, assistant_id, started, names, asked=(said_as, text))
    view = message_view(message, conversation.pk, names)
    view.actions = True
    return Sent(conversation, started.run_id, view)


async def admitted(user: User, upload_bytes: int) -> int:
    """Count one more answer for the person, or refuse it with what their limits say."""
    await admission.settle_lost(user)
    try:
        return await sync_to_async(admission.admit)(user, upload_bytes)
    except admission.OverLimit as over:
        raise Refused(str(over)) from over


def tools_for(profile: AssistantProfile, files: list[CheckedFile]) -> list[list[str]]:
    """Which tools read each attached file: code interpreter when the assistant has it, file
    search where the type is searchable. A data file (CSV, Excel) no tool reads is refused."""
    tools = []
    for file in files:
        chosen = ["code_interpreter"] if profile.code_interpreter else []
        if file.searchable:
            chosen.append("file_search")
        if not chosen:
            raise Refused(
                f"{file.name}: {profile.name} cannot read data files (it has no code "
                f"interpreter). Attach {uploads.TYPES_TEXT} files, or ask an assistant with "
                "code interpreter."
            )
        tools.append(chosen)
    return tools


async def send_with_files(
    thread_id: str | None,
    assistant_id: str,
    text: str,
    files: list[CheckedFile],
    tools: list[list[str]],
) -> tuple[api.Started, dict[str, Any], dict[str, CheckedFile]]:
    """Upload the files, add the message, wait until the searchable ones are searchable, then
    start the run. A failure on the way removes what was made."""
    created_thread = thread_id is None
    uploaded: list[str] = []
    message: dict[str, Any] | None = None
    try:
        if thread_id is None:
            thread_id = await api.create_thread()
        for file in files:
            uploaded.append(await api.upload_file(file.name, file.file, file.content_type))
        message = await api.create_message(thread_id, text, dict(zip(uploaded, tools, strict=True)))
        await readable(
            thread_id, {f: file for f, file in zip(uploaded, files, strict=True) if file.searchable}
        )
        started = await api.start_run(thread_id, assistant_id)
    except (api.AssistantsError, Unreadable) as error:
        busy = not created_thread and thread_id is not None and await is_busy(thread_id)
        if thread_id is not None:
            await undo(
                thread_id,
                created_thread=created_thread,
                message_id=message["id"] if message else None,
                file_ids=uploaded,
            )
        raise Refused(
            busy_unseen() if busy and isinstance(error, api.AssistantsError) else str(error)
        ) from error
    return started, message, dict(zip(uploaded, files, strict=True))


class Unreadable(Exception):
    """An attached file that the API could not read (say, a PDF without text)."""


async def readable(thread_id: str, uploaded: dict[str, CheckedFile]) -> None:
    """Wait for the attachments to be searchable, as OpenAI asked clients to before a run."""
    if not uploaded:
        return
    failed = await api.wait_for_ingestion(
        thread_id, list(uploaded), timeout=settings.CHAT_INGEST_WAIT_SECONDS
    )
    if failed:
        raise Unreadable(
            " ".join(f"{uploaded[f].name} could not be read: {why}" for f, why in failed.items())
        )


async def retry(user: User, conversation: Conversation) -> Sent:
    """Answer the thread again, after a run failed: no new message (but a new answer, which
    counts against the person's limits as a message does)."""
    assistant_id = await answer_again(user, conversation)
    async with counted(user) as usage_id:
        return await restart(conversation, assistant_id, usage_id)


async def answer_again(user: User, conversation: Conversation) -> str:
    """The id of the thread's assistant, once it is sure the thread may be answered again."""
    await ensure_idle(conversation)
    profile = conversation.assistant
    if profile is None or not await sync_to_async(may_use)(user, profile):
        raise Refused(GONE)
    return str(await usable(current_assistant(profile)))


async def regenerate(user: User, conversation: Conversation, message_id: str) -> Sent:
    """Answer the last message again: the newest answer (every message of its run) is removed
    through the API, then a new run starts. `message_id` is the answer the page showed as the
    newest; if it no longer is, nothing is done."""
    assistant_id = await answer_again(user, conversation)
    async with counted(user) as usage_id:
        return await regenerate_counted(conversation, assistant_id, message_id, usage_id)


async def regenerate_counted(
    conversation: Conversation, assistant_id: str, message_id: str, usage_id: int
) -> Sent:
    recent = await usable(api.recent_messages(conversation.thread_id))
    newest = recent[0] if recent else {}
    run_id = newest.get("run_id")
    mine = [m for m in recent if run_id and m.get("run_id") == run_id]
    if newest.get("role") != "assistant" or message_id not in {m["id"] for m in mine}:
        raise Refused(STALE)
    removed = [m["id"] for m in mine]
    for answer_id in removed:
        await usable(api.delete_message(conversation.thread_id, answer_id))
    await sync_to_async(search.forget)(conversation.pk, removed)
    sent = await restart(conversation, assistant_id, usage_id)
    sent.removed = removed
    return sent


async def edit(user: User, conversation: Conversation, message_id: str, text: str) -> Sent:
    """Replace one of the person's messages: it and every message after it are removed through
    the API, the new text is added (with the same attachments) and a new run starts.

    The new message is added before anything is removed, so a refusal leaves the thread as it
    was; should removing fail half way, the thread keeps the new message with some of the old
    ones, and nothing the person wrote is lost."""
    assistant_id = await answer_again(user, conversation)
    async with counted(user) as usage_id:
        return await edit_counted(conversation, assistant_id, message_id, text, usage_id)


async def edit_counted(
    conversation: Conversation, assistant_id: str, message_id: str, text: str, usage_id: int
) -> Sent:
    if message_id.startswith("sent-"):
        message_id = await sent_message_id(conversation.thread_id, message_id.removeprefix("sent-"))
    try:
        original = await api.retrieve_message(conversation.thread_id, message_id)
    except api.NotFound:
        raise Refused(STALE) from None
    except api.AssistantsError as error:
        raise Refused(str(error)) from error
    if original.get("role") != "user":
        raise Refused(STALE)
    later = await usable(api.messages_after(conversation.thread_id, message_id))
    # The same files, read by the same tools (code interpreter, file search) as before.
    files = {
        a["file_id"]: [tool["type"] for tool in a.get("tools") or []]
        for a in original.get("attachments") or []
    }
    added = await usable(api.create_message(conversation.thread_id, text, files))
    removed = [message_id, *(m["id"] for m in later)]
    for old_id in removed:
        await usable(api.delete_message(conversation.thread_id, old_id))
    # The person's messages among them are kept under the names the chat gave them.
    await sync_to_async(search.forget)(
        conversation.pk, removed + search.keys_of([original, *later])
    )
    sent = await restart(conversation, assistant_id, usage_id, asked=(str(added["id"]), text))
    names = dict(
        await sync_to_async(lambda: list(conversation.uploads.values_list("file_id", "name")))()
    )
    sent.message = message_view(added, conversation.pk, names)
    sent.message.actions = True
    sent.removed = removed
    return sent


async def sent_message_id(thread_id: str, run_id: str) -> str:
    """The id of the message a page shows as just sent (`sent-<run id>`: the run added it, so
    the page did not know its id): the person's message before that run's answer."""
    chronological = list(reversed(await usable(api.recent_messages(thread_id))))
    answered = next(
        (i for i, m in enumerate(chronological) if m.get("run_id") == run_id),
        len(chronological),
    )
    users = [m for m in chronological[:answered] if m.get("role") == "user"]
    if not users:
        raise Refused(STALE)
    return str(users[-1]["id"])


@contextlib.asynccontextmanager
async def counted(user: User, upload_bytes: int = 0) -> AsyncIterator[int]:
    """One more answer counted for the person (refused past their limits), uncounted again if
    none starts. Regenerate and Edit count before they remove anything."""
    usage_id = await admitted(user, upload_bytes)
    try:
        yield usage_id
    except BaseException:
        await sync_to_async(admission.release)(usage_id)
        raise


async def restart(
    conversation: Conversation,
    assistant_id: str,
    usage_id: int,
    asked: tuple[str, str] | None = None,
) -> Sent:
    """Answer the thread again as it is (after `asked`, the person's message just added: its
    id and text)."""
    try:
        started = await api.start_run(conversation.thread_id, assistant_id)
    except api.AssistantsError as error:
        busy = await is_busy(conversation.thread_id)
        raise Refused(busy_unseen() if busy else str(error)) from error
    await sync_to_async(started_again)(conversation, started.run_id, usage_id)
    launch(conversation, assistant_id, started, {}, asked=asked)
    return Sent(conversation, started.run_id, None)


def started_again(conversation: Conversation, run_id: str, usage_id: int) -> None:
    with transaction.atomic():
        conversation.start_run(run_id)
        admission.started(usage_id, conversation, run_id)


def launch(
    conversation: Conversation,
    assistant_id: str,
    started: api.Started,
    uploads: dict[str, str],
    asked: tuple[str, str] | None = None,
) -> None:
    relay.open_log(started.run_id, conversation.pk)
    relay.start(
        relay.RunStart(
            conversation_id=conversation.pk,
            thread_id=started.thread_id,
            assistant_id=assistant_id,
            run_id=started.run_id,
            events=started.events,
            uploads=uploads,
            asked=asked,
        )
    )


def record_send(
    user: User,
    conversation: Conversation | None,
    profile: AssistantProfile,
    thread_id: str,
    text: str,
    run_id: str,
    uploaded: dict[str, CheckedFile],
    usage_id: int,
) -> Conversation:
    with transaction.atomic():
        if conversation is None:
            conversation = Conversation.objects.create(
                owner=user,
                thread_id=thread_id,
                assistant=profile,
                title=plain_title(text),
            )
        Upload.objects.bulk_create(
            Upload(
                owner=user,
                conversation=conversation,
                file_id=file_id,
                name=file.name,
                size=file.size,
                content_type=file.content_type,
            )
            for file_id, file in uploaded.items()
        )
        conversation.start_run(run_id)
        # In the same transaction as the uploads: the files count as stored from here on.
        admission.started(usage_id, conversation, run_id)
    return conversation


async def usable(call: Any) -> Any:
    try:
        return await call
    except api.AssistantsError as error:
        raise Refused(str(error)) from error


async def ensure_idle(conversation: Conversation) -> None:
    """Refuse while an answer streams; forget a run that ended without its relay noticing."""
    if not conversation.active_run_id:
        return
    try:
        run = await api.retrieve_run(conversation.thread_id, conversation.active_run_id)
    except api.NotFound:
        run = {"status": "gone"}
    except api.AssistantsError as error:
        raise Refused(str(error)) from error
    if run["status"] in api.ACTIVE_STATUSES:
        raise Refused(BUSY)
    await sync_to_async(Conversation.end_run)(conversation.pk, conversation.active_run_id)
    conversation.active_run_id = ""


async def is_busy(thread_id: str) -> bool:
    try:
        return await api.active_run_id(thread_id) is not None
    except api.AssistantsError:
        return False


async def undo(
    thread_id: str, *, created_thread: bool, message_id: str | None, file_ids: list[str]
) -> None:
    """Remove what a failed send created remotely; what cannot be removed is logged."""
    try:
        if created_thread:
            await api.delete_thread(thread_id)  # its message goes with it
        elif message_id is not None:
            await api.delete_message(thread_id, message_id)
        for file_id in file_ids:
            await api.delete_file(file_id)
    except api.AssistantsError:
        log.warning("Could not remove what a failed send created on thread %s", thread_id)


# --- Stopping, renaming, deleting -----------------------------------------------------------------


async def stop(conversation: Conversation) -> None:
    """Cancel the answer in progress; what it has written so far stays."""
    if conversation.active_run_id:
        await usable(api.cancel_run(conversation.thread_id, conversation.active_run_id))
        # A relay waiting on function calls hears it now, not on its next tick.
        await rounds.notify(conversation.active_run_id)


def rename(conversation: Conversation, title: str) -> None:
    conversation.rename(title)


async def delete(conversation: Conversation) -> None:
    """Delete the remote thread, then the conversation: if the API fails, nothing is lost."""
    await usable(remove_remote(conversation))
    await conversation.adelete()


async def remove_remote(conversation: Conversation) -> None:
    """What the conversation has on the Assistants API: its answer in progress is stopped, its
    thread (with the store of its attachments) and the files people attached are deleted.
    AssistantsError if the thread cannot be deleted; files that cannot are logged."""
    if conversation.active_run_id:
        with contextlib.suppress(api.AssistantsError):
            await api.cancel_run(conversation.thread_id, conversation.active_run_id)
    await api.delete_thread(conversation.thread_id)
    file_ids = [u.file_id async for u in Upload.objects.filter(conversation=conversation)]
    for file_id in file_ids:
        try:
            await api.delete_file(file_id)
        except api.AssistantsError:
            log.warning("Could not delete file %s of conversation %s", file_id, conversation.pk)


# --- Reading --------------------------------------------------------------------------------------


def forget_lost_run(conversation: Conversation) -> None:
    """A live answer whose relay is gone can no longer be followed: show the thread as the API
    has it instead of a live section that never ends. Gone: its replay log is (the server
    restarted), or the log never ended though the run did (the process relaying it died; in
    Redis, the log outlives it)."""
    run_id = conversation.active_run_id
    if not run_id:
        return
    log = replay.meta(run_id)
    if log is None or (log.end is None and run_over(conversation.thread_id, run_id)):
        Conversation.end_run(conversation.pk, run_id)
        conversation.active_run_id = ""


def run_over(thread_id: str, run_id: str) -> bool:
    try:
        run = api.last_run(thread_id)
    except api.AssistantsError:
        return False
    return run is None or run["id"] != run_id or run["status"] not in api.ACTIVE_STATUSES


class BadCursor(Exception):
    """A page cursor that names no message of the thread (a hand-made or stale link)."""


# What message ids are made of; anything else is not worth asking the API about.
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass
class History:
    messages: list[MessageView]  # oldest first
    older: str | None  # cursor of the next older page, if there is one
    last_run: RunView | None = None  # the last answer, when it went wrong


def history(
    conversation: Conversation, older_than: str | None = None, *, file_route: str = OWNER_FILES
) -> History:
    """A page of the thread's messages from the API, without the answer that is streaming now
    (the live stream replays that one whole). Files link to `file_route` (the admin's own)."""
    if older_than is not None and not CURSOR.fullmatch(older_than):
        raise BadCursor(older_than)
    try:
        page = api.list_messages(conversation.thread_id, older_than=older_than, limit=PAGE_SIZE)
    except api.AssistantsError as error:
        # The API refuses a cursor it does not know (400; other servers may say 404).
        if older_than is not None and error.status in (400, 404):
            raise BadCursor(older_than) from error
        raise
    active = conversation.active_run_id
    messages = [m for m in page.messages if not (active and m.get("run_id") == active)]
    search.remember_shown(conversation.pk, messages)
    names = dict(conversation.uploads.values_list("file_id", "name"))
    missing = cited_file_ids(messages) - set(names)
    if missing:
        names |= api.file_names(missing)
    oldest_first = list(reversed(messages))
    steps = steps_by_message(conversation, oldest_first, file_route)
    views = []
    for message in oldest_first:
        shown = steps.get(message.get("id", ""), [])
        # Figures that the run's code steps show are not shown again in the answer (as live).
        view = message_view(
            message, conversation.pk, names, file_route, skip_images=images_shown(shown)
        )
        view.steps = shown
        views.append(view)
    if file_route == OWNER_FILES:
        for view in views:
            view.actions = True
        if older_than is None and not active and views and views[-1].role == "assistant":
            views[-1].regenerable = True
    history = History(views, page.older)
    last = views[-1] if views else None
    if older_than is None and not active and last and (last.role == "user" or last.incomplete):
        history.last_run = unanswered(conversation, answered=last.role != "user")
    return history


def unanswered(conversation: Conversation, *, answered: bool) -> RunView | None:
    """Why the last message has no answer, or only part of one (the run failed, say), as the
    live page said it, if its run ended so."""
    run = api.last_run(conversation.thread_id)
    if run is None or run["status"] in api.ACTIVE_STATUSES or run["status"] == "completed":
        return None
    return RunView.ended(conversation.pk, run, answered=answered)

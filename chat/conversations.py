"""What people do with their conversations: send, retry, stop, read, rename, delete.

Each workflow either happens whole or leaves nothing behind: if the Assistants API fails half
way through a send, what was already created remotely (thread, files, message) is removed again
and `Refused` says why, so the page can keep the person's text and show the reason.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from chat import assistants_api as api
from chat import remote_assistant
from chat.access import may_use
from chat.limits import admission
from chat.live import relay, replay
from chat.live.answer import RunView
from chat.models import AssistantProfile, Conversation, Upload
from chat.rendering import OWNER_FILES, MessageView, cited_file_ids, message_view
from chat.uploads import CheckedFile

log = logging.getLogger(__name__)

BUSY = "The assistant is still answering. Wait until it has finished, or press Stop."
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
    usage_id = await admitted(user, sum(file.size for file in files))
    try:
        return await send_admitted(user, conversation, profile, text, files, usage_id)
    except BaseException:
        await sync_to_async(admission.release)(usage_id)
        raise


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
        started, message, uploaded = await send_with_files(thread_id, assistant_id, text, files)
    else:
        # One request adds the message and starts the run (on a new thread, if need be): the
        # API does both or neither.
        try:
            started = await api.start_run(thread_id, assistant_id, text)
        except api.AssistantsError as error:
            busy = thread_id is not None and await is_busy(thread_id)
            raise Refused(BUSY if busy else str(error)) from error
        message = {
            "id": f"sent-{started.run_id}",
            "role": "user",
            "content": [{"type": "text", "text": {"value": text}}],
        }
    conversation = await sync_to_async(record_send)(
        user, conversation, profile, started.thread_id, text, started.run_id, uploaded, usage_id
    )
    names = {file_id: file.name for file_id, file in uploaded.items()}
    launch(conversation, assistant_id, started, names)
    return Sent(conversation, started.run_id, message_view(message, conversation.pk, names))


async def admitted(user: User, upload_bytes: int) -> int:
    """Count one more answer for the person, or refuse it with what their limits say."""
    await admission.settle_lost(user)
    try:
        return await sync_to_async(admission.admit)(user, upload_bytes)
    except admission.OverLimit as over:
        raise Refused(str(over)) from over


async def send_with_files(
    thread_id: str | None, assistant_id: str, text: str, files: list[CheckedFile]
) -> tuple[api.Started, dict[str, Any], dict[str, CheckedFile]]:
    """Upload the files, add the message, wait until the files are searchable, then start the
    run. A failure on the way removes what was made."""
    created_thread = thread_id is None
    uploaded: list[str] = []
    message: dict[str, Any] | None = None
    try:
        if thread_id is None:
            thread_id = await api.create_thread()
        for file in files:
            uploaded.append(await api.upload_file(file.name, file.file, file.content_type))
        message = await api.create_message(thread_id, text, uploaded)
        await readable(thread_id, dict(zip(uploaded, files, strict=True)))
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
            BUSY if busy and isinstance(error, api.AssistantsError) else str(error)
        ) from error
    return started, message, dict(zip(uploaded, files, strict=True))


class Unreadable(Exception):
    """An attached file that the API could not read (say, a PDF without text)."""


async def readable(thread_id: str, uploaded: dict[str, CheckedFile]) -> None:
    """Wait for the attachments to be searchable, as OpenAI asked clients to before a run."""
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
    await ensure_idle(conversation)
    profile = conversation.assistant
    if profile is None or not await sync_to_async(may_use)(user, profile):
        raise Refused(GONE)
    usage_id = await admitted(user, 0)
    try:
        assistant_id = await usable(current_assistant(profile))
        try:
            started = await api.start_run(conversation.thread_id, assistant_id)
        except api.AssistantsError as error:
            busy = await is_busy(conversation.thread_id)
            raise Refused(BUSY if busy else str(error)) from error
        await sync_to_async(restart)(conversation, started.run_id, usage_id)
    except BaseException:
        await sync_to_async(admission.release)(usage_id)
        raise
    launch(conversation, assistant_id, started, {})
    return Sent(conversation, started.run_id, None)


def restart(conversation: Conversation, run_id: str, usage_id: int) -> None:
    with transaction.atomic():
        conversation.start_run(run_id)
        admission.started(usage_id, conversation, run_id)


def launch(
    conversation: Conversation, assistant_id: str, started: api.Started, uploads: dict[str, str]
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
                title=Conversation.title_from(text),
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


def rename(conversation: Conversation, title: str) -> None:
    conversation.title = " ".join(title.split())[:200] or conversation.title
    conversation.save(update_fields=["title"])


async def delete(conversation: Conversation) -> None:
    """Delete the remote thread, then the conversation: if the API fails, nothing is lost."""
    if conversation.active_run_id:
        with contextlib.suppress(api.AssistantsError):
            await api.cancel_run(conversation.thread_id, conversation.active_run_id)
    await usable(api.delete_thread(conversation.thread_id))
    file_ids = [u.file_id async for u in Upload.objects.filter(conversation=conversation)]
    for file_id in file_ids:
        with contextlib.suppress(api.AssistantsError):
            await api.delete_file(file_id)
    await conversation.adelete()


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
    page = api.list_messages(conversation.thread_id, older_than=older_than, limit=PAGE_SIZE)
    active = conversation.active_run_id
    messages = [m for m in page.messages if not (active and m.get("run_id") == active)]
    names = dict(conversation.uploads.values_list("file_id", "name"))
    missing = cited_file_ids(messages) - set(names)
    if missing:
        names |= api.file_names(missing)
    views = [message_view(m, conversation.pk, names, file_route) for m in reversed(messages)]
    history = History(views, page.older)
    if older_than is None and not active and views and views[-1].role == "user":
        history.last_run = unanswered(conversation)
    return history


def unanswered(conversation: Conversation) -> RunView | None:
    """Why the last message has no answer (the run failed, say), with a Retry, if it ended so."""
    run = api.last_run(conversation.thread_id)
    if run is None or run["status"] in api.ACTIVE_STATUSES or run["status"] == "completed":
        return None
    return RunView.ended(conversation.pk, run)

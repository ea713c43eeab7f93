"""The chat's engine key opens a project of its own: scripts' keys do not read people's threads.

Both servers here run as `make run` sets one up: the chat's key made by `issue_frontend_key`
and kept in the data directory, THREADLINE_API_KEYS for scripts. The offline model answers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import openai
import pytest

from tests.chat.conftest import PASSWORD, ChatClient
from tests.servers import ThreadlineServer, sdk, shell

SCRIPT_KEY = "sk-a-script-of-the-admins"
PEOPLE = f"""
import json
from django.contrib.auth.models import User
from chat.models import AssistantProfile
User.objects.create_user("owner", password={PASSWORD!r})
print(json.dumps(AssistantProfile.objects.create(
    name="Notes", model="threadline-retrieval", published=True
).pk))
"""
# An install from before: the chat's key in the default project, as issue_frontend_key made it.
OLD_FRONTEND_KEY = """
import json
from django.conf import settings
from engine.models import ApiKey, Project
_, plaintext = ApiKey.issue(Project.default(), "Chat frontend")
settings.ASSISTANTS_KEY_FILE.write_text(plaintext + "\\n")
print("null")
"""
# The upgrade's data migration, run as `migrate` ran it on an install from before the split.
# Called directly, not through `migrate`: chat migrations made after it are applied already.
THE_MOVE = """
import importlib
from pathlib import Path
from django.apps import apps
import chat.migrations
(found,) = Path(chat.migrations.__file__).parent.glob("*_chat_objects_in_their_own_project.py")
importlib.import_module("chat.migrations." + found.stem).move_to_chat_project(apps, None)
print("null")
"""
REMOTE_IDS = """
import json
from chat.models import Conversation, Upload
conversation = Conversation.objects.get()
print(json.dumps([conversation.pk, conversation.thread_id, Upload.objects.get().file_id]))
"""


def make_server() -> ThreadlineServer:
    env = {"THREADLINE_ASSISTANTS_KEY": "", "THREADLINE_API_KEYS": SCRIPT_KEY}
    server = ThreadlineServer(env=env)
    server.migrate()
    server.manage("collectstatic", "--noinput", "-v0")
    return server


@pytest.fixture
def server() -> Iterator[ThreadlineServer]:
    server = make_server()
    try:
        yield server
    finally:
        server.stop()


def converse(server: ThreadlineServer, profile: int) -> tuple[int, str, str]:
    """The owner asks about an attached file; (conversation id, thread id, file id)."""
    owner = ChatClient(server.url)
    try:
        owner.login("owner")
        notes = b"The lighthouse keeper counts 412 gulls every morning.\n"
        sent = owner.send(
            "How many gulls?", assistant=profile, files=[("notes.txt", notes, "text/plain")]
        )
        assert sent.events_url, sent.response.text
        owner.events(sent.events_url)
    finally:
        owner.close()
    conversation, thread_id, file_id = shell(server, REMOTE_IDS)
    return conversation, thread_id, file_id


def sees(client: openai.OpenAI, thread_id: str, file_id: str) -> tuple[bool, bool]:
    found = []
    for fetch in (
        lambda: client.beta.threads.retrieve(thread_id),
        lambda: client.files.retrieve(file_id),
    ):
        try:
            fetch()
            found.append(True)
        except openai.NotFoundError:
            found.append(False)
    return found[0], found[1]


def test_scripts_keys_do_not_read_the_chats_threads_and_files(server: ThreadlineServer) -> None:
    server.manage("issue_frontend_key")
    profile = shell(server, PEOPLE)
    server.start()
    _, thread_id, file_id = converse(server, profile)

    nightly = server.manage("create_api_key", "nightly export").strip()
    for key in (SCRIPT_KEY, nightly):
        with sdk(server, key=key) as script:
            assert sees(script, thread_id, file_id) == (False, False)
            assert script.beta.assistants.list().data == []
    # Unless an admin says otherwise, knowingly.
    reader = server.manage("create_api_key", "support", "--project", "chat").strip()
    with sdk(server, key=reader) as support:
        assert sees(support, thread_id, file_id) == (True, True)


def test_an_install_from_before_moves_the_chats_objects_into_its_project() -> None:
    server = make_server()
    try:
        # As the install was: the chat's key in the default project, with what it made there.
        shell(server, OLD_FRONTEND_KEY)
        profile = shell(server, PEOPLE)
        server.start()
        conversation, thread_id, file_id = converse(server, profile)
        with sdk(server, key=SCRIPT_KEY) as script:
            assert sees(script, thread_id, file_id) == (True, True)  # what was wrong
            mine = script.beta.assistants.create(model="threadline-retrieval", name="script's")
        server.stop()

        shell(server, THE_MOVE)  # the upgrade
        server.start()
        with sdk(server, key=SCRIPT_KEY) as script:
            assert sees(script, thread_id, file_id) == (False, False)
            assert [a.id for a in script.beta.assistants.list()] == [mine.id]  # still its own
        owner = ChatClient(server.url)
        try:
            owner.login("owner")
            page = owner.get(f"/c/{conversation}/")
            assert page.status_code == 200 and "How many gulls?" in page.text
            assert owner.get(f"/c/{conversation}/files/{file_id}").status_code == 200
            again = owner.send("And tomorrow?", conversation_id=conversation)
            assert again.events_url, again.response.text
            _, events = owner.events(again.events_url)
            assert events[-1].event == "end" and "The answer failed" not in events[-2].data
        finally:
            owner.close()
    finally:
        with contextlib.suppress(Exception):
            server.stop()

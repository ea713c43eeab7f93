"""An admin deletes someone who has chatted: after the usual confirmation, their conversations,
remote threads and attached files go with them."""

from __future__ import annotations

import re

import openai

from tests.chat.conftest import PASSWORD, ChatClient, ChatServer, Scripted
from tests.fake_model import Reply
from tests.servers import ENGINE_KEY, shell

LEAVER = f"""
import json
from django.contrib.auth.models import User
print(json.dumps(User.objects.create_user("leaver", password={PASSWORD!r}).pk))
"""
LEFT = """
import json
from django.contrib.auth.models import User
from chat.models import Conversation, Upload
print(json.dumps([
    User.objects.filter(username="leaver").count(),
    Conversation.objects.filter(owner__username="leaver").count(),
    Upload.objects.filter(owner__username="leaver").count(),
]))
"""
REMOTE = """
import json
from chat.models import Conversation, Upload
print(json.dumps([
    list(Conversation.objects.filter(owner__username="leaver").values_list("thread_id", flat=True)),
    list(Upload.objects.filter(owner__username="leaver").values_list("file_id", flat=True)),
]))
"""


def test_deleting_a_person_who_chatted_removes_their_threads_and_files(
    chat_server: ChatServer, scripted: Scripted
) -> None:
    user_id = shell(chat_server.server, LEAVER)
    scripted.script(Reply("First answer."), Reply("Second answer."))
    leaver = ChatClient(chat_server.url)
    try:
        leaver.login("leaver")
        notes = ("notes.txt", b"Private notes of the leaver.\n", "text/plain")
        first = leaver.send("Hello", assistant=scripted.profile_id, files=[notes])
        assert first.events_url, first.response.text
        leaver.events(first.events_url)
        second = leaver.send("Another thread", assistant=scripted.profile_id)
        assert second.events_url
        leaver.events(second.events_url)
    finally:
        leaver.close()
    thread_ids, file_ids = shell(chat_server.server, REMOTE)
    assert len(thread_ids) == 2 and len(file_ids) == 1

    admin = ChatClient(chat_server.url)
    try:
        admin.login("admin")
        confirm = admin.get(f"/admin/auth/user/{user_id}/delete/")
        assert confirm.status_code == 200
        assert "permission to delete" not in confirm.text
        for thread_id in thread_ids:
            assert f"Remote thread: {thread_id}" in confirm.text
        assert f"Remote file: notes.txt ({file_ids[0]})" in confirm.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', confirm.text)
        assert token
        done = admin.http.post(
            f"/admin/auth/user/{user_id}/delete/",
            data={"csrfmiddlewaretoken": token.group(1), "post": "yes"},
        )
        assert done.status_code == 302, done.text[:3000]
    finally:
        admin.close()

    assert shell(chat_server.server, LEFT) == [0, 0, 0]
    with openai.OpenAI(base_url=chat_server.server.api_url, api_key=ENGINE_KEY) as client:
        for thread_id in thread_ids:
            try:
                client.beta.threads.retrieve(thread_id)
                raise AssertionError(f"{thread_id} is still there")
            except openai.NotFoundError:
                pass
        try:
            client.files.retrieve(file_ids[0])
            raise AssertionError("the attached file is still there")
        except openai.NotFoundError:
            pass

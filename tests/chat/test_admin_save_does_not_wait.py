"""Saving an assistant in the admin never holds the database while it asks the Assistants API.

On SQLite the admin's save is a write transaction; had it asked the embedded engine anything
inside it, the engine, writing to the same database (a key's last use, say), would wait for it
until the lock's 30-second timeout. Set up as `make run` sets up: the chat's key is an engine key
in the database, whose last use the engine notes.
"""

from __future__ import annotations

import re
import time

import httpx2

from tests.chat.conftest import PASSWORD
from tests.servers import ThreadlineServer, sdk, shell

ADMIN = f"""
from django.contrib.auth.models import User
User.objects.create_superuser("admin", password={PASSWORD!r})
print("null")
"""
PROFILE = """
import json
from chat.models import AssistantProfile
profile = AssistantProfile.objects.get(name="Quick")
print(json.dumps([profile.assistant_id, profile.sync_error]))
"""


def test_saving_an_assistant_is_quick_with_the_engine_in_the_same_database() -> None:
    server = ThreadlineServer(env={"THREADLINE_ASSISTANTS_KEY": ""})
    try:
        server.migrate()
        server.manage("collectstatic", "--noinput", "-v0")
        server.manage("issue_frontend_key")
        shell(server, ADMIN)
        server.start()
        with httpx2.Client(base_url=server.url, timeout=60) as http:
            http.get("/admin/login/")
            signed_in = http.post(
                "/admin/login/",
                data={
                    "username": "admin",
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": http.cookies["csrftoken"],
                    "next": "/admin/",
                },
            )
            assert signed_in.status_code == 302
            # A token from a page that asks the API nothing: the add form's model list is
            # not remembered yet when the form is posted, and neither is the key's last use.
            token = re.search(
                r'name="csrfmiddlewaretoken" value="([^"]+)"', http.get("/admin/").text
            )
            assert token
            add = "/admin/chat/assistantprofile/add/"
            started = time.monotonic()
            saved = http.post(
                add,
                data={
                    "csrfmiddlewaretoken": token.group(1),
                    "name": "Quick",
                    "model": "threadline-retrieval",
                    "response_format": "auto",
                    "file_search": "on",
                    "published": "on",
                },
            )
            took = time.monotonic() - started
        assert saved.status_code == 302, saved.text[:2000]
        assert took < 10, f"saving took {took:.1f} s"
        assistant_id, error = shell(server, PROFILE)
        assert assistant_id.startswith("asst_") and error == ""
        with sdk(server) as client:  # ENGINE_KEY is a script's key here: it does not see it
            assert all(a.id != assistant_id for a in client.beta.assistants.list())
    finally:
        server.stop()

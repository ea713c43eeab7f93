"""The admin's transcript opens the files its citations and attachments name, through an admin
route of its own: the owner's route is the owner's alone (anyone else gets a 404 there).

Over real HTTP against the live chat server: the file streams from the API on the server's event
loop, which Django's test client does not have.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.chat.conftest import ChatClient, ChatServer, Scripted, corpus
from tests.fake_model import Reply, ToolCall
from tests.servers import sdk, shell

PDF = "crazyones.pdf"
ZEBRAS = b"# Zebras\n\nEvery zebra has its own pattern of stripes.\n"
STAFF = """
import json
from django.contrib.auth.models import User
if not User.objects.filter(username="staff").exists():
    User.objects.create_user("staff", password="a-long-test-password-42", is_staff=True)
print("null")
"""


@pytest.fixture
def admin(chat_server: ChatServer) -> Iterator[ChatClient]:
    """A superuser: reads everyone's threads in the admin."""
    client = ChatClient(chat_server.url)
    client.login("admin")
    yield client
    client.close()


@pytest.fixture
def staff(chat_server: ChatServer) -> Iterator[ChatClient]:
    """Staff without any permission: the admin lets them in, but not to conversations."""
    shell(chat_server.server, STAFF)
    client = ChatClient(chat_server.url)
    client.login("staff")
    yield client
    client.close()


def thread_of(chat_server: ChatServer, conversation_id: int) -> str:
    code = (
        "import json; from chat.models import Conversation; "
        f"print(json.dumps(Conversation.objects.get(pk={conversation_id}).thread_id))"
    )
    return shell(chat_server.server, code)


def test_admin_follows_a_transcripts_citations_to_the_files_of_that_thread_only(
    owner: ChatClient,
    admin: ChatClient,
    staff: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
) -> None:
    # The owner attaches a PDF, and the answer cites it.
    scripted.script(
        Reply(tool_calls=[ToolCall("file_search", '{"query": "crazy ones"}')]),
        Reply(f"Here's to the crazy ones 【0:0†{PDF}】."),
    )
    sent = owner.send(
        "Quote it", assistant=scripted.profile_id, files=[(PDF, corpus(PDF), "application/pdf")]
    )
    assert sent.events_url and sent.conversation_id
    owner.events(sent.events_url)

    with sdk(chat_server.server) as client:
        # A file the thread holds that the owner never uploaded through the chat (a script
        # added it), which the next answer cites: allowed because the thread cites it.
        thread_id = thread_of(chat_server, sent.conversation_id)
        zebras = client.files.create(file=("zebras.md", ZEBRAS), purpose="assistants")
        client.beta.threads.messages.create(
            thread_id,
            role="user",
            content="Notes on zebras.",
            attachments=[{"file_id": zebras.id, "tools": [{"type": "file_search"}]}],
        )
        # A real file, but not this thread's.
        elsewhere = client.files.create(file=("other.md", b"# Other\n"), purpose="assistants")
    scripted.script(
        Reply(tool_calls=[ToolCall("file_search", '{"query": "zebra stripes"}')]),
        Reply("Each has its own stripes 【0:0†zebras.md】."),
    )
    again = owner.send("And zebras?", conversation_id=sent.conversation_id)
    assert again.events_url
    owner.events(again.events_url)

    base = f"/admin/chat/conversation/{sent.conversation_id}"
    transcript = admin.get(f"{base}/transcript/").text
    links = dict(
        re.findall(rf'<sup class="cite"><a href="({base}/files/[^"#]+/)(#page=\d+)?"', transcript)
    )
    assert "/c/" not in "".join(re.findall(r'href="([^"]+/files/[^"]+)"', transcript))
    assert len(links) == 2, transcript
    pdf_link, zebra_link = links
    assert links[pdf_link] == "#page=1"  # the cited page stays in the link

    pdf = admin.get(pdf_link)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content == corpus(PDF)
    notes = admin.get(zebra_link)
    assert notes.status_code == 200 and notes.content == ZEBRAS
    assert "attachment" in notes.headers["content-disposition"]  # not a type shown inline

    assert admin.get(f"{base}/files/{elsewhere.id}/").status_code == 404
    assert admin.get(f"{base}/files/file-nope/").status_code == 404
    assert admin.get(f"/admin/chat/conversation/999999/files/{zebras.id}/").status_code == 404
    # The owner is no admin; staff without the view permission on conversations are refused.
    refused = owner.get(pdf_link)
    assert refused.status_code == 302 and "/admin/login/" in refused.headers["location"]
    assert staff.get(pdf_link).status_code == 403

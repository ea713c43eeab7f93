"""Assistant profiles: who may use which, and how they mirror remote assistants."""

from __future__ import annotations

import json

import openai

from tests.chat.conftest import ChatClient, ChatServer, Scripted
from tests.chat.functions_setup import action_url, read_until_waiting
from tests.fake_model import Reply, ToolCall
from tests.servers import ENGINE_KEY, ThreadlineServer, shell


def sdk(chat_server: ChatServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=chat_server.server.api_url, api_key=ENGINE_KEY, max_retries=0)


def profile_row(chat_server: ChatServer, profile_id: int) -> dict[str, str]:
    return shell(
        chat_server.server,
        "import json; from chat.models import AssistantProfile as P; "
        f"p = P.objects.get(pk={profile_id}); "
        "print(json.dumps({'assistant_id': p.assistant_id, 'model': p.model}))",
    )


def test_default_assistant_is_created_once_for_the_configured_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    offline = ThreadlineServer(data_dir=tmp_path / "offline")
    offline.data_dir.mkdir()
    offline.migrate()
    assert "threadline-retrieval" in offline.manage("create_default_assistant")
    assert offline.manage("create_default_assistant") == ""  # already there
    row = shell(
        offline,
        "import json; from chat.models import AssistantProfile as P; p = P.objects.get(); "
        "print(json.dumps([p.published, p.file_search, p.assistant_id]))",
    )
    assert row == [True, True, ""]  # the remote assistant comes on first use

    online = ThreadlineServer(
        env={"OPENAI_API_KEY": "sk-x", "THREADLINE_DEFAULT_MODEL": "gpt-test"},
        data_dir=tmp_path / "online",
    )
    online.data_dir.mkdir()
    online.migrate()
    assert "gpt-test" in online.manage("create_default_assistant")


def test_remote_assistant_is_made_on_first_use_and_follows_edits(
    owner: ChatClient, scripted: Scripted, chat_server: ChatServer
) -> None:
    scripted.script(Reply("one"), Reply("two"))
    assert profile_row(chat_server, scripted.profile_id)["assistant_id"] == ""
    sent = owner.send("hello", assistant=scripted.profile_id)
    assert sent.events_url
    owner.events(sent.events_url)
    assistant_id = profile_row(chat_server, scripted.profile_id)["assistant_id"]
    with sdk(chat_server) as client:
        remote = client.beta.assistants.retrieve(assistant_id)
        assert remote.model == scripted.model
        assert [t.type for t in remote.tools] == ["file_search"]

        shell(
            chat_server.server,
            "from chat.models import AssistantProfile as P; "
            f"p = P.objects.get(pk={scripted.profile_id}); p.instructions = 'Be terse.'; "
            "p.save(); print('null')",
        )
        again = owner.send("again", conversation_id=sent.conversation_id)
        assert again.events_url
        owner.events(again.events_url)
        assert client.beta.assistants.retrieve(assistant_id).instructions == "Be terse."
    assert profile_row(chat_server, scripted.profile_id)["assistant_id"] == assistant_id


def test_assistants_for_a_group_are_offered_only_to_its_members(
    owner: ChatClient, other: ChatClient, chat_server: ChatServer, assistant: tuple[int, str]
) -> None:
    profile_id = assistant[0]
    shell(
        chat_server.server,
        "from django.contrib.auth.models import Group, User; "
        "from chat.models import AssistantProfile as P; "
        "g, _ = Group.objects.get_or_create(name='legal'); "
        "User.objects.get(username='owner').groups.add(g); "
        f"P.objects.get(pk={profile_id}).groups.add(g); print('null')",
    )
    assert f'<option value="{profile_id}"' in owner.get("/").text
    assert f'<option value="{profile_id}"' not in other.get("/").text
    sent = other.send("let me in", assistant=profile_id)
    assert "Choose an assistant." in sent.response.text
    assert sent.response.headers.get("HX-Push-Url") is None


def test_unpublished_assistant_keeps_threads_readable_but_closed(
    owner: ChatClient, scripted: Scripted, chat_server: ChatServer
) -> None:
    scripted.script(Reply("still here"))
    sent = owner.send("before", assistant=scripted.profile_id)
    assert sent.events_url
    owner.events(sent.events_url)
    shell(
        chat_server.server,
        f"from chat.models import AssistantProfile as P; "
        f"P.objects.filter(pk={scripted.profile_id}).update(published=False); print('null')",
    )
    page = owner.get(f"/c/{sent.conversation_id}/")
    assert "still here" in page.text
    after = owner.send("after", conversation_id=sent.conversation_id)
    assert "no longer available" in after.response.text
    assert "after</textarea>" in after.response.text


def test_a_remote_assistants_own_function_is_answered_by_the_user(
    owner: ChatClient, scripted: Scripted, chat_server: ChatServer
) -> None:
    """A remote assistant with its own function tool, which no registry entry runs: the chat
    asks the person, and the answer goes on with theirs."""
    weather = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
    with sdk(chat_server) as client:
        remote = client.beta.assistants.create(model=scripted.model, tools=[weather])
    shell(
        chat_server.server,
        "from chat.models import AssistantProfile as P; "
        f"P.objects.filter(pk={scripted.profile_id}).update(assistant_id={remote.id!r}); "
        "print('null')",
    )
    scripted.script(
        Reply(tool_calls=[ToolCall("get_weather", json.dumps({"city": "Oslo"}))]),
        Reply("Back to normal."),
    )
    sent = owner.send("Weather in Oslo?", assistant=scripted.profile_id)
    assert sent.events_url
    events = read_until_waiting(owner, sent.events_url)
    assert "Oslo" in events[-1].data and "Your answer" in events[-1].data
    owner.post(action_url(events[-1].data), {"action": "answer", "answer": "Sunny"})
    _, rest = owner.events(sent.events_url, last_event_id=events[-1].id)
    assert "Back to normal." in rest[-2].data
    with sdk(chat_server) as client:
        # Mirroring kept the admin's function tool and added file_search.
        tools = [t.type for t in client.beta.assistants.retrieve(remote.id).tools]
        assert tools == ["function", "file_search"]


def test_admin_suggests_the_models_the_api_lists(chat_server: ChatServer) -> None:
    admin = ChatClient(chat_server.url)
    try:
        admin.login("admin")
        form = admin.get("/admin/chat/assistantprofile/add/").text
        assert 'list="model-suggestions"' in form
        assert '<option value="gpt-4o-mini">' in form
        assert '<option value="threadline-retrieval">' in form
    finally:
        admin.close()

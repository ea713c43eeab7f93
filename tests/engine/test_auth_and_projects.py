"""Bearer keys and project isolation."""

import httpx2 as httpx
import openai
import pytest

from tests.conftest import sdk
from tests.servers import ThreadlineServer


def create_key(server: ThreadlineServer, project: str) -> str:
    return server.manage("create_api_key", "test", "--project", project).strip()


def test_missing_key_is_401_in_openai_shape(offline_engine: ThreadlineServer) -> None:
    # The SDK refuses to send without a key, so send the request by hand.
    response = httpx.get(f"{offline_engine.api_url}/assistants")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_wrong_key_is_401(offline_engine: ThreadlineServer) -> None:
    with (
        sdk(offline_engine, key="sk-wrong-key-123456") as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.beta.assistants.list()
    assert caught.value.body["code"] == "invalid_api_key"
    assert "sk-wrong-key-123456" not in caught.value.body["message"]


def test_admin_created_key_works_and_sees_only_its_project(
    offline_engine: ThreadlineServer, offline_client: openai.OpenAI
) -> None:
    mine = offline_client.beta.assistants.create(model="threadline-retrieval", name="mine")
    thread = offline_client.beta.threads.create()
    with sdk(offline_engine, key=create_key(offline_engine, "other-team")) as other:
        check_isolation(offline_client, other, mine.id, thread.id)


def check_isolation(
    offline_client: openai.OpenAI, other: openai.OpenAI, mine_id: str, thread_id: str
) -> None:
    theirs = other.beta.assistants.create(model="threadline-retrieval", name="theirs")
    listed = [a.id for a in other.beta.assistants.list()]
    assert theirs.id in listed
    assert mine_id not in listed
    with pytest.raises(openai.NotFoundError):
        other.beta.assistants.retrieve(mine_id)
    with pytest.raises(openai.NotFoundError):
        other.beta.threads.retrieve(thread_id)
    # Ids inside request bodies are scoped too: a foreign assistant cannot run on my thread.
    with pytest.raises(openai.NotFoundError) as caught:
        offline_client.beta.threads.runs.create(thread_id=thread_id, assistant_id=theirs.id)
    assert caught.value.body["param"] == "assistant_id"

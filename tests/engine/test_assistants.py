"""/v1/assistants through the SDK: CRUD, pagination and bad input."""

import httpx2 as httpx
import openai
import pytest

from tests.servers import ENGINE_KEY, ThreadlineServer


def test_assistant_crud(offline_client: openai.OpenAI) -> None:
    created = offline_client.beta.assistants.create(
        model="gpt-4o-mini",
        name="Math tutor",
        instructions="You are a personal math tutor.",
        tools=[{"type": "code_interpreter"}],
        metadata={"team": "math"},
        temperature=0.2,
    )
    assert created.id.startswith("asst_")
    assert offline_client.beta.assistants.retrieve(created.id).name == "Math tutor"

    updated = offline_client.beta.assistants.update(created.id, name="Algebra tutor", top_p=0.9)
    assert (updated.name, updated.top_p, updated.model) == ("Algebra tutor", 0.9, "gpt-4o-mini")
    assert updated.instructions == "You are a personal math tutor."

    deleted = offline_client.beta.assistants.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        offline_client.beta.assistants.retrieve(created.id)


def test_list_paginates_in_both_orders(offline_engine: ThreadlineServer) -> None:
    from tests.conftest import sdk
    from tests.engine.test_auth_and_projects import create_key

    with sdk(offline_engine, key=create_key(offline_engine, "pagination")) as client:
        check_pagination(client)


def check_pagination(client: openai.OpenAI) -> None:
    ids = [client.beta.assistants.create(model="m", name=f"a{i}").id for i in range(25)]

    page = client.beta.assistants.list(limit=10, order="asc")
    assert [a.id for a in page.data] == ids[:10]
    assert page.has_more is True
    assert [a.id for a in client.beta.assistants.list(limit=10, order="asc")] == ids  # auto-paging
    assert [a.id for a in client.beta.assistants.list(limit=7)] == ids[::-1]

    before = client.beta.assistants.list(limit=5, order="asc", before=ids[12])
    assert [a.id for a in before.data] == ids[7:12]
    after = client.beta.assistants.list(limit=5, order="desc", after=ids[3])
    assert [a.id for a in after.data] == ids[2::-1]
    assert after.has_more is False


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"model": "m", "instructions": "x" * 256_001}, "instructions", "256000"),
        ({"model": "m", "tools": [{"type": "code_interpreter"}] * 129}, "tools", "128"),
        ({"model": "m", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "16"),
        ({"model": "m", "temperature": "hot"}, "temperature", "number"),
        ({"model": "m", "colour": "blue"}, "colour", "Unrecognized"),
        ({"name": "no model"}, "model", "Missing required"),
        ({"model": "m", "tools": [{"type": "web_browser"}]}, "tools[0]", "type"),
        (
            {
                "model": "m",
                "tools": [
                    {"type": "function", "function": {"name": "f"}},
                    {"type": "function", "function": {"name": "f"}},
                ],
            },
            "tools",
            "unique",
        ),
    ],
)
def test_bad_assistant_is_400_naming_the_parameter(
    offline_engine: ThreadlineServer, body: dict, param: str, needle: str
) -> None:
    response = httpx.post(
        f"{offline_engine.api_url}/assistants",
        json=body,
        headers={"Authorization": f"Bearer {ENGINE_KEY}"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"].startswith(param)
    assert needle.lower() in error["message"].lower()


def test_malformed_json_and_wrong_method(offline_engine: ThreadlineServer) -> None:
    headers = {"Authorization": f"Bearer {ENGINE_KEY}", "Content-Type": "application/json"}
    bad = httpx.post(f"{offline_engine.api_url}/assistants", content=b"{nope", headers=headers)
    assert bad.status_code == 400
    assert "JSON" in bad.json()["error"]["message"]

    wrong = httpx.put(f"{offline_engine.api_url}/assistants", json={}, headers=headers)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"

    unknown = httpx.get(f"{offline_engine.api_url}/no/such/path", headers=headers)
    assert unknown.status_code == 404
    assert "error" in unknown.json()

    cursor = httpx.get(f"{offline_engine.api_url}/assistants?limit=500", headers=headers)
    assert cursor.status_code == 400
    assert cursor.json()["error"]["param"] == "limit"

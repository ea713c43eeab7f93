"""The rules of MCP tools that need no live server: function names within the API's rule, the
webhooks' address rules for MCP URLs (checked where the SDK's client connects, before any byte
is sent), the forms of a server's questions, and a call's clock stopped while the person
answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.http import QueryDict

from chat.tools import elicitation, mcp_catalog, mcp_client
from chat.tools.mcp_calls import Clock, within
from chat.tools.models import NAME


def test_a_name_that_fits_is_server_and_tool() -> None:
    assert mcp_catalog.function_name("crm", "find_contact") == "crm__find_contact"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("x" * 70 + "_one", "x" * 70 + "_two"),  # too long, equal where they are cut
        ("get.contact", "get_contact."),  # characters the API refuses
        ("übersicht", "_bersicht"),
    ],
)
def test_names_that_do_not_fit_are_cut_and_hashed_so_they_never_collide(
    first: str, second: str
) -> None:
    one = mcp_catalog.function_name("server-with-long-name", first)
    two = mcp_catalog.function_name("server-with-long-name", second)
    assert NAME.match(one) and NAME.match(two)
    assert one != two
    assert one.startswith("server-with-long-name__")


def test_a_listing_says_what_was_added_removed_and_changed() -> None:
    before = [
        {"name": "a", "description": "A", "input_schema": {}},
        {"name": "b", "description": "B", "input_schema": {}},
        {"name": "c", "description": "C", "input_schema": {}},
    ]
    after = [
        {"name": "a", "description": "A", "input_schema": {}},
        {"name": "b", "description": "B", "input_schema": {"type": "object"}},
        {"name": "d", "description": "D", "input_schema": {}},
    ]
    assert mcp_catalog.changes_between(before, after) == {
        "added": ["d"],
        "removed": ["c"],
        "changed": ["b"],
    }


def listing(url: str) -> None:
    asyncio.run(mcp_client.list_tools(mcp_client.Target("tools", url, timeout=5)))


def test_an_internal_address_needs_the_allowlist_even_behind_a_name(settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = []
    with pytest.raises(mcp_client.McpFailure, match=r"localhost resolves to 127\.0\.0\.1"):
        listing("http://localhost:9/mcp")
    with pytest.raises(mcp_client.McpFailure, match="THREADLINE_WEBHOOK_ALLOWED_HOSTS"):
        listing("http://10.1.2.3/mcp")


def test_a_metadata_address_is_never_reached_even_when_allowlisted(settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = ["169.254.169.254"]
    with pytest.raises(mcp_client.McpFailure, match="link-local or metadata") as refused:
        listing("http://169.254.169.254/mcp")
    assert refused.value.unreachable


SCHEMA = {
    "type": "object",
    "properties": {
        "quantity": {"type": "integer", "title": "How many", "minimum": 1, "maximum": 20},
        "colour": {"type": "string", "enum": ["blue", "red"], "enumNames": ["Blue", "Red"]},
        "email": {"type": "string", "format": "email"},
        "wrap": {"type": "boolean", "title": "Gift wrap"},
    },
    "required": ["quantity", "colour"],
}


def test_a_question_becomes_fields_of_the_right_kinds() -> None:
    fields = {field.name: field for field in elicitation.fields_of(SCHEMA)}
    assert fields["quantity"].kind == "number" and fields["quantity"].step == "1"
    assert (fields["quantity"].minimum, fields["quantity"].maximum) == ("1", "20")
    assert fields["colour"].kind == "choice"
    assert fields["colour"].choices == [("blue", "Blue"), ("red", "Red")]
    assert fields["email"].kind == "email" and not fields["email"].required
    assert fields["wrap"].kind == "checkbox"


def answer(**values: str) -> QueryDict:
    data = QueryDict(mutable=True)
    for key, value in values.items():
        data[key] = value
    return data


def test_an_answer_is_typed_and_checked_against_the_schema() -> None:
    content = elicitation.content_for(SCHEMA, answer(quantity="3", colour="red", wrap="on"))
    assert content == {"quantity": 3, "colour": "red", "wrap": True}
    with pytest.raises(elicitation.Incomplete, match="'quantity' is a required property"):
        elicitation.content_for(SCHEMA, answer(colour="red"))
    with pytest.raises(elicitation.Incomplete, match="How many must be a whole number"):
        elicitation.content_for(SCHEMA, answer(quantity="2.5", colour="red"))
    with pytest.raises(elicitation.Incomplete, match="'green' is not one of"):
        elicitation.content_for(SCHEMA, answer(quantity="2", colour="green"))


def test_the_clock_stops_while_the_person_answers() -> None:
    async def asking(clock: Clock) -> str:
        clock.pause()
        await asyncio.sleep(0.6)  # the person takes their time
        clock.resume()
        return "answered"

    async def working(clock: Clock) -> str:
        await asyncio.sleep(0.6)
        return "too late"

    async def call(work: Any) -> str:
        clock = Clock(0.3)
        return str(await within(clock, asyncio.ensure_future(work(clock))))

    assert asyncio.run(call(asking)) == "answered"
    with pytest.raises(TimeoutError):
        asyncio.run(call(working))

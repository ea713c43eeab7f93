"""file_search inside runs: the offline model and a model API both cite file and page."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.engine.test_runs import sent_to, unique_model
from tests.fake_model import FakeModelServer, Reply, ToolCall

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "pdf"
GEOBASE = CORPUS / "GeoBase_NHNC1_Data_Model_UML_EN.pdf"
SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"


def knowledge_store(client: openai.OpenAI, *paths: Path) -> str:
    store = client.vector_stores.create(name="knowledge")
    for path in paths:
        with path.open("rb") as f:
            done = client.vector_stores.files.upload_and_poll(
                vector_store_id=store.id, file=f, poll_interval_ms=100
            )
        assert done.status == "completed", done.last_error
    return store.id


@pytest.fixture(scope="module")
def offline_store(offline_engine) -> str:  # type: ignore[no-untyped-def]
    from tests.conftest import sdk

    with sdk(offline_engine) as client:
        return knowledge_store(client, GEOBASE)


def citations(message) -> list:  # type: ignore[no-untyped-def]
    return [a for a in message.content[0].text.annotations if a.type == "file_citation"]


def test_offline_model_answers_from_knowledge_with_page_citations(
    offline_client: openai.OpenAI, offline_store: str
) -> None:
    assistant = offline_client.beta.assistants.create(
        model="threadline-retrieval",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [offline_store]}},
    )
    run = offline_client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Who authored the Toponymy Model?"}]},
        poll_interval_ms=50,
    )
    assert run.status == "completed", run.last_error
    answer = offline_client.beta.threads.messages.list(thread_id=run.thread_id).data[0]
    text = answer.content[0].text.value
    found = citations(answer)
    assert found, text
    first = found[0]
    assert text[first.start_index : first.end_index] == first.text
    assert first.text.startswith("【0:0†")
    assert first.file_citation.file_id
    extra = first.file_citation.model_extra or {}
    assert extra["page"] == 18
    assert extra["quote"] and extra["quote"] in text

    steps = offline_client.beta.threads.runs.steps.list(
        thread_id=run.thread_id, run_id=run.id, order="asc", include=[SEARCH_CONTENT]
    )
    search_step = steps.data[0]
    assert search_step.type == "tool_calls"
    call = search_step.step_details.tool_calls[0]
    assert call.type == "file_search"
    result = call.file_search.results[0]
    assert result.file_name == GEOBASE.name
    assert result.content and result.content[0].text
    assert steps.data[1].type == "message_creation"

    plain = offline_client.beta.threads.runs.steps.retrieve(
        search_step.id, thread_id=run.thread_id, run_id=run.id
    )
    assert not plain.step_details.tool_calls[0].file_search.results[0].content


def test_offline_model_streams_the_search_step(
    offline_client: openai.OpenAI, offline_store: str
) -> None:
    assistant = offline_client.beta.assistants.create(
        model="threadline-retrieval",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [offline_store]}},
    )
    thread = offline_client.beta.threads.create(
        messages=[{"role": "user", "content": "Which four packages make up the NHNC1 model?"}]
    )
    events = []
    with offline_client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id
    ) as stream:
        for event in stream:
            events.append(event.event)
        final = stream.get_final_messages()
    assert events.index("thread.run.step.created") < events.index("thread.message.created")
    assert events[-1] == "thread.run.completed"
    assert "Hydro Network, Hydrographic, Hydro Events and Metadata" in (
        final[0].content[0].text.value
    )


def test_offline_model_with_code_interpreter_answers_as_without_it(
    offline_client: openai.OpenAI, offline_store: str
) -> None:
    """The offline model writes no code: code interpreter on the assistant changes nothing."""
    assistant = offline_client.beta.assistants.create(
        model="threadline-retrieval",
        tools=[{"type": "code_interpreter"}, {"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [offline_store]}},
    )
    run = offline_client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Who authored the Toponymy Model?"}]},
        poll_interval_ms=50,
    )
    assert run.status == "completed", run.last_error
    answer = offline_client.beta.threads.messages.list(thread_id=run.thread_id).data[0]
    assert citations(answer)[0].file_citation.model_extra["page"] == 18
    steps = offline_client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id)
    calls = [
        call.type
        for step in steps.data
        if step.step_details.type == "tool_calls"
        for call in step.step_details.tool_calls
    ]
    assert calls == ["file_search"]


def test_offline_model_without_knowledge_says_how_to_configure_a_model(
    offline_client: openai.OpenAI,
) -> None:
    assistant = offline_client.beta.assistants.create(model="threadline-retrieval")
    run = offline_client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Hello?"}]},
        poll_interval_ms=50,
    )
    text = offline_client.beta.threads.messages.list(thread_id=run.thread_id).data[0]
    assert "No language model is configured" in text.content[0].text.value
    assert "OPENAI_API_KEY" in text.content[0].text.value


def test_message_attachment_gets_the_thread_its_own_store(
    offline_client: openai.OpenAI,
) -> None:
    with GEOBASE.open("rb") as f:
        upload = offline_client.files.create(file=f, purpose="assistants")
    assistant = offline_client.beta.assistants.create(model="threadline-retrieval")
    thread = offline_client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "When was the first draft written for discussion with Nova Scotia?",
                "attachments": [{"file_id": upload.id, "tools": [{"type": "file_search"}]}],
            }
        ]
    )
    store_ids = thread.tool_resources.file_search.vector_store_ids
    assert len(store_ids) == 1
    offline_client.vector_stores.files.poll(
        upload.id, vector_store_id=store_ids[0], poll_interval_ms=100
    )
    run = offline_client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "completed"
    assert any(tool.type == "file_search" for tool in run.tools)
    answer = offline_client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert "September 2002" in answer.content[0].text.value
    assert citations(answer)[0].file_citation.file_id == upload.id


def test_model_api_calls_file_search_and_its_answer_is_cited(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    store_id = knowledge_store(client, GEOBASE)
    model = unique_model()
    model_server.script(
        model,
        [
            Reply(tool_calls=[ToolCall("file_search", '{"query": "Toponymy Model authors"}')]),
            Reply("The Toponymy Model has named authors 【0:0†source】."),
        ],
    )
    assistant = client.beta.assistants.create(
        model=model,
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}},
    )
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Who authored the Toponymy Model?"}]},
        poll_interval_ms=50,
    )
    assert run.status == "completed", run.last_error
    requests = sent_to(model_server, model)
    assert requests[0]["tools"][0]["function"]["name"] == "file_search"
    tool_output = next(m for m in requests[1]["messages"] if m["role"] == "tool")["content"]
    assert tool_output.startswith("【0:0†" + GEOBASE.name + "】 (page 18)")

    answer = client.beta.threads.messages.list(thread_id=run.thread_id).data[0]
    cited = citations(answer)
    assert len(cited) == 1
    assert (cited[0].file_citation.model_extra or {})["page"] == 18


def test_run_started_right_after_attaching_waits_for_ingestion(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    with GEOBASE.open("rb") as f:
        upload = client.files.create(file=f, purpose="assistants")
    model = unique_model()
    model_server.script(
        model,
        [
            Reply(tool_calls=[ToolCall("file_search", '{"query": "Toponymy Model author"}')]),
            Reply("Cited 【0:0†source】."),
        ],
    )
    assistant = client.beta.assistants.create(model=model)
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={
            "messages": [
                {
                    "role": "user",
                    "content": "Who authored the Toponymy Model?",
                    "attachments": [{"file_id": upload.id, "tools": [{"type": "file_search"}]}],
                }
            ]
        },
        poll_interval_ms=50,
    )
    assert run.status == "completed", run.last_error
    tool_output = next(
        m for m in sent_to(model_server, model)[1]["messages"] if m["role"] == "tool"
    )
    assert "(page 18)" in tool_output["content"]


def test_offline_answer_quotes_each_passage_once_in_whole_sentences(
    offline_client: openai.OpenAI, offline_store: str
) -> None:
    assistant = offline_client.beta.assistants.create(
        model="threadline-retrieval",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [offline_store]}},
    )
    # The table of contents names these packages too, with dot leaders and page numbers.
    run = offline_client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "What does the LRS model contain?"}]},
        poll_interval_ms=50,
    )
    assert run.status == "completed", run.last_error
    answer = offline_client.beta.threads.messages.list(thread_id=run.thread_id).data[0]
    text = answer.content[0].text.value
    quotes = [line.removeprefix("> ") for line in text.split("\n\n") if line.startswith("> ")]
    assert quotes, text
    for found in citations(answer):
        quote = (found.file_citation.model_extra or {})["quote"]
        assert text.count(quote) == 1, quote  # once, and the footnote names only the source
    for quote in quotes:
        words = quote.split("【")[0].strip()
        assert words[0].isupper() or words[0].isdigit(), words
        assert words[-1] in ".!?:…", words
        assert "...." not in words and ". . ." not in words
        assert "GeoBase® " not in words and "Edition 1.0 2004-06" not in words
    assert "— GeoBase" not in text

"""Code written for Azure OpenAI runs against Threadline with only its endpoint changed.

The official SDK's `AzureOpenAI` client sends `{endpoint}/openai/...?api-version=...` with an
`api-key` header and no `Authorization`. This is the Azure training material's flow, as it is
written there: upload, a vector store with a batch, an assistant with file_search, a thread,
a streamed run with an event handler, a polled run, and the cited answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai import AssistantEventHandler, AzureOpenAI
from typing_extensions import override

from tests.engine.test_file_search_runs import GEOBASE
from tests.servers import ENGINE_KEY, ThreadlineServer


@pytest.fixture
def azure(offline_engine: ThreadlineServer) -> Iterator[AzureOpenAI]:
    client = AzureOpenAI(
        azure_endpoint=offline_engine.url,  # the one change: Threadline's URL
        api_key=ENGINE_KEY,
        api_version="2024-05-01-preview",
        max_retries=0,
    )
    with client:
        yield client


class Printer(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tools: list[str] = []

    @override
    def on_text_delta(self, delta, snapshot) -> None:  # type: ignore[no-untyped-def]
        self.text.append(delta.value or "")

    @override
    def on_tool_call_created(self, tool_call) -> None:  # type: ignore[no-untyped-def]
        self.tools.append(tool_call.type)


def test_azure_code_runs_with_only_the_endpoint_changed(azure: AzureOpenAI) -> None:
    with GEOBASE.open("rb") as f:
        uploaded = azure.files.create(file=f, purpose="assistants")
    assert azure.files.retrieve(uploaded.id).filename == GEOBASE.name

    store = azure.vector_stores.create(name="Product documentation")
    with GEOBASE.open("rb") as f:
        batch = azure.vector_stores.file_batches.upload_and_poll(
            vector_store_id=store.id, files=[f], poll_interval_ms=100
        )
    assert batch.status == "completed" and batch.file_counts.completed == 1

    assistant = azure.beta.assistants.create(
        name="Data model helper",
        instructions="Answer from the documentation and cite it.",
        model="gpt-4o-mini",  # a deployment name on Azure; any model name here
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    thread = azure.beta.threads.create()
    azure.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="Which four packages make up the NHNC1 model?"
    )
    printer = Printer()
    with azure.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=printer
    ) as stream:
        stream.until_done()
    assert stream.get_final_run().status == "completed"
    assert printer.tools == ["file_search"]
    assert "Hydro Network" in "".join(printer.text)

    azure.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="What does the abbreviation LRM stand for?"
    )
    run = azure.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=100
    )
    assert run.status == "completed", run.last_error
    answer = azure.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert "Linear Reference Method" in answer.content[0].text.value
    assert any(a.type == "file_citation" for a in answer.content[0].text.annotations)

    listed = [a.id for a in azure.beta.assistants.list()]
    assert assistant.id in listed
    azure.beta.assistants.delete(assistant.id)
    azure.vector_stores.delete(store.id)
    azure.files.delete(uploaded.id)


def test_azure_errors_are_the_sdks_own_exceptions(azure: AzureOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        azure.beta.assistants.retrieve("asst_nobody")
    assert caught.value.body["message"] == "No assistant found with id 'asst_nobody'."
    wrong = azure.with_options(api_key="sk-not-a-key")
    with pytest.raises(openai.AuthenticationError):
        wrong.beta.assistants.list()

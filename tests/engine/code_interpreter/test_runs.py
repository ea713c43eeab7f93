"""Code interpreter in runs, through the SDK: the scripted model calls `python`, the engine runs
the code in the thread's sandbox and records OpenAI's objects."""

from __future__ import annotations

import json

import openai

from tests.engine.test_runs import sent_to, unique_model
from tests.fake_model import FakeModelServer, Reply, ToolCall

PNG = b"\x89PNG\r\n\x1a\n"


def python(code: str) -> Reply:
    return Reply(tool_calls=[ToolCall("python", json.dumps({"code": code}))])


def run_with_code(
    client: openai.OpenAI,
    model: str,
    question: str,
    thread_id: str | None = None,
    **assistant: object,
) -> openai.types.beta.threads.Run:
    made = client.beta.assistants.create(
        model=model, tools=[{"type": "code_interpreter"}], **assistant
    )  # type: ignore[arg-type]
    if thread_id is None:
        return client.beta.threads.create_and_run_poll(
            assistant_id=made.id,
            thread={"messages": [{"role": "user", "content": question}]},
            poll_interval_ms=50,
        )
    client.beta.threads.messages.create(thread_id, role="user", content=question)
    return client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=made.id, poll_interval_ms=50
    )


def code_calls(client: openai.OpenAI, run: openai.types.beta.threads.Run) -> list:  # type: ignore[type-arg]
    steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=run.thread_id, order="asc")
    return [
        call
        for step in steps.data
        if step.step_details.type == "tool_calls"
        for call in step.step_details.tool_calls
        if call.type == "code_interpreter"
    ]


def test_a_chart_gives_an_image_output_and_an_image_file(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    code = (
        "import matplotlib.pyplot as plt\n"
        "x = list(range(-10, 11))\n"
        "plt.plot(x, [2 * v + 5 for v in x])\n"
        "plt.show()\n"
        "print('plotted')"
    )
    model_server.script(model, [python(code), Reply("Here is y = 2x + 5.")])
    run = run_with_code(client, model, "Can you chart y=2*x+5 where x=[-10,10]?")
    assert run.status == "completed", run.last_error

    requests = sent_to(model_server, model)
    offered = requests[0]["tools"][0]["function"]
    assert offered["name"] == "python" and offered["parameters"]["required"] == ["code"]
    assert "No internet access" in offered["description"]
    tool_output = next(m for m in requests[1]["messages"] if m["role"] == "tool")["content"]
    assert tool_output == "plotted\n[a figure was shown to the user]"

    (call,) = code_calls(client, run)
    assert call.code_interpreter.input == code
    logs, image = call.code_interpreter.outputs
    assert logs.type == "logs" and logs.logs == "plotted"
    assert image.type == "image"
    picture = client.files.retrieve(image.image.file_id)
    assert picture.purpose == "assistants_output"
    assert client.files.content(picture.id).read().startswith(PNG)

    answer = client.beta.threads.messages.list(thread_id=run.thread_id).data[0]
    assert answer.content[0].type == "image_file"
    assert answer.content[0].image_file.file_id == picture.id
    assert answer.content[1].type == "text"


def test_a_file_named_in_the_answer_gets_its_file_path_annotation(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    code = "open('/mnt/data/squares.csv', 'w').write('n,square\\n2,4\\n3,9\\n')"
    answer_text = "Here it is: [squares.csv](sandbox:/mnt/data/squares.csv)."
    model_server.script(model, [python(code), Reply(answer_text)])
    run = run_with_code(client, model, "Write the squares to a CSV.")
    assert run.status == "completed", run.last_error

    (call,) = code_calls(client, run)
    assert "[file written: sandbox:/mnt/data/squares.csv]" in call.code_interpreter.outputs[0].logs
    text = client.beta.threads.messages.list(thread_id=run.thread_id).data[0].content[0]
    assert text.type == "text" and text.text.value == answer_text
    (annotation,) = text.text.annotations
    assert annotation.type == "file_path"
    assert annotation.text == "sandbox:/mnt/data/squares.csv"
    assert answer_text[annotation.start_index : annotation.end_index] == annotation.text
    written = client.files.retrieve(annotation.file_path.file_id)
    assert written.filename == "squares.csv" and written.purpose == "assistants_output"
    assert client.files.content(written.id).read() == b"n,square\n2,4\n3,9\n"


def test_state_persists_within_a_thread_and_not_across_threads(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(model, [python("secret = 41"), Reply("Stored.")])
    first = run_with_code(client, model, "Remember a number.")
    assert first.status == "completed", first.last_error

    model_server.script(model, [python("print(secret + 1)"), Reply("It is 42.")])
    again = run_with_code(client, model, "What is it plus one?", thread_id=first.thread_id)
    assert again.status == "completed", again.last_error
    assert code_calls(client, again)[0].code_interpreter.outputs[0].logs == "42"

    model_server.script(model, [python("print(secret + 1)"), Reply("I do not know.")])
    other = run_with_code(client, model, "What is it plus one?")
    logs = code_calls(client, other)[0].code_interpreter.outputs[0].logs
    assert "NameError: name 'secret' is not defined" in logs


def test_the_assistants_files_are_in_mnt_data(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    data = client.files.create(
        file=("sales.csv", b"month,total\njan,10\nfeb,32\n"), purpose="assistants"
    )
    model = unique_model()
    code = "import pandas as pd\nprint(pd.read_csv('/mnt/data/sales.csv')['total'].sum())"
    model_server.script(model, [python(code), Reply("42 in all.")])
    run = run_with_code(
        client,
        model,
        "Sum the sales.",
        tool_resources={"code_interpreter": {"file_ids": [data.id]}},
    )
    assert run.status == "completed", run.last_error
    assert code_calls(client, run)[0].code_interpreter.outputs[0].logs == "42"
    description = sent_to(model_server, model)[0]["tools"][0]["function"]["description"]
    assert "/mnt/data/sales.csv" in description


def test_step_deltas_carry_the_code_as_the_model_writes_it_then_the_output(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    code = 'total = sum(range(10))\nprint("total", total)'
    model_server.script(model, [python(code), Reply("45.")])
    assistant = client.beta.assistants.create(model=model, tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Add 0..9."}])
    pieces: list[tuple[str, str]] = []
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        for event in stream:
            if event.event != "thread.run.step.delta":
                continue
            details = event.data.delta.step_details
            assert details is not None and details.type == "tool_calls"
            for call in details.tool_calls or []:
                assert call.type == "code_interpreter" and call.index == 0
                delta = call.code_interpreter
                if delta is not None and delta.input:
                    pieces.append(("input", delta.input))
                for output in (delta.outputs or []) if delta is not None else []:
                    if output.type == "logs" and output.logs:
                        pieces.append(("logs", output.logs))
        run = stream.get_final_run()
    assert run.status == "completed", run.last_error
    inputs = [text for kind, text in pieces if kind == "input"]
    # In the model's own pieces (the scripted model sends a few characters at a time), all of
    # them before the first output, which comes as the code prints it.
    assert len(inputs) > 5 and "".join(inputs) == code
    first_log = [kind for kind, _ in pieces].index("logs")
    assert all(kind == "input" for kind, _ in pieces[:first_log])
    assert "".join(text for kind, text in pieces if kind == "logs") == "total 45\n"
    (call,) = code_calls(client, run)
    assert call.code_interpreter.input == code

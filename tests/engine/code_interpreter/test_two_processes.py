"""Two server processes on one database (README, "Scaling out"): a thread's session lives in the
process that ran its last code call. A run of the thread in the other process gets the thread's
files staged again and is told its variables were reset; the first process's session, now
behind, is never resumed."""

from __future__ import annotations

import openai

from tests.engine.code_interpreter.test_runs import code_calls, python
from tests.engine.test_runs import unique_model
from tests.fake_model import FakeModelServer, Reply
from tests.servers import ThreadlineServer, model_env, sdk


def run_code(client: openai.OpenAI, thread_id: str, assistant_id: str) -> str:
    client.beta.threads.messages.create(thread_id, role="user", content="go on")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=50
    )
    assert run.status == "completed", run.last_error
    (call,) = code_calls(client, run)
    return str(call.code_interpreter.outputs[0].logs)


def test_a_thread_moving_between_processes_keeps_its_files_and_says_state_was_reset(
    model_server: FakeModelServer,
) -> None:
    a = ThreadlineServer(env=model_env(model_server), name="a").start()
    shared = {"DATABASE_URL": a.env["DATABASE_URL"]} if "DATABASE_URL" in a.env else {}
    b = ThreadlineServer(env={**model_env(model_server), **shared}, data_dir=a.data_dir, name="b")
    b.migrated = True
    b.start()
    try:
        model = unique_model()
        look = "import os\nprint('x' in globals(), sorted(os.listdir('/mnt/data')))"
        with sdk(a) as on_a, sdk(b) as on_b:
            data = on_a.files.create(file=("data.csv", b"n\n1\n"), purpose="assistants")
            assistant = on_a.beta.assistants.create(
                model=model,
                tools=[{"type": "code_interpreter"}],
                tool_resources={"code_interpreter": {"file_ids": [data.id]}},
            )
            thread = on_a.beta.threads.create()

            model_server.script(model, [python("x = 41\nprint(x + 1)"), Reply("42")])
            assert run_code(on_a, thread.id, assistant.id) == "42"
            model_server.script(model, [python("print(x)"), Reply("41")])
            assert run_code(on_a, thread.id, assistant.id) == "41"

            # On B: the files are there, the variables are not, and the model is told so.
            model_server.script(model, [python(look), Reply("Moved.")])
            on_b_logs = run_code(on_b, thread.id, assistant.id)
            assert on_b_logs.startswith("Note: this is a new Python session")
            assert on_b_logs.endswith("False ['data.csv']")

            # Back on A: its session missed B's call, so it is replaced, not resumed.
            model_server.script(model, [python(look), Reply("Back.")])
            back_logs = run_code(on_a, thread.id, assistant.id)
            assert "the thread's code ran in another server process since" in back_logs
            assert back_logs.endswith("False ['data.csv']")
    finally:
        b.stop()
        a.stop()

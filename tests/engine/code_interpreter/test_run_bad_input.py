"""Bad input at the run level, through the SDK: what the model's code does to the answer, and
a server that dies while code runs."""

from __future__ import annotations

import time

import openai

from tests.engine.code_interpreter.test_runs import code_calls, python, run_with_code
from tests.engine.test_runs import unique_model, wait_for
from tests.fake_model import FakeModelServer, Reply
from tests.servers import ThreadlineServer, model_env, sdk


def test_a_symlink_to_etc_passwd_named_in_the_answer_gets_no_file(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    code = "import os\nos.symlink('/etc/passwd', '/mnt/data/passwd')\nprint('linked')"
    answer = "Here: [passwd](sandbox:/mnt/data/passwd)"
    model_server.script(model, [python(code), Reply(answer)])
    run = run_with_code(client, model, "Give me the users.")
    assert run.status == "completed", run.last_error

    (call,) = code_calls(client, run)
    (logs,) = call.code_interpreter.outputs
    assert logs.type == "logs"
    assert "linked" in logs.logs and "file written" not in logs.logs
    text = client.beta.threads.messages.list(thread_id=run.thread_id).data[0].content[0]
    assert text.type == "text" and text.text.value == answer
    # No annotation, so no file: nothing of the host's /etc/passwd left the sandbox.
    assert text.text.annotations == []
    outputs = [f for f in client.files.list().data if f.purpose == "assistants_output"]
    assert all(f.filename != "passwd" for f in outputs)


def test_a_server_restarted_mid_execution_fails_the_run_and_the_next_call_gets_a_new_session(
    model_server: FakeModelServer,
) -> None:
    env = {**model_env(model_server), "THREADLINE_RUN_STALE_SECONDS": "2"}
    server = ThreadlineServer(env=env).start()
    try:
        model = unique_model()
        slow = "x = 1\nimport time\nprint('working', flush=True)\ntime.sleep(120)"
        model_server.script(model, [python(slow)])
        with sdk(server) as client:
            assistant = client.beta.assistants.create(
                model=model, tools=[{"type": "code_interpreter"}]
            )
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
            run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id)
                if any(s.step_details.type == "tool_calls" for s in steps.data):
                    break
                time.sleep(0.1)
            time.sleep(1.5)  # the code is running in the sandbox now

        server.kill()
        server.start()  # same data directory and database, a new process
        with sdk(server) as client:
            failed = wait_for(client, run, ("failed",), timeout=30)
            assert failed.last_error.code == "server_error"
            assert "restarted" in failed.last_error.message

            # The thread takes a new message; the next call runs in a new session, and the
            # model is told that the state is gone.
            model_server.script(
                model, [python("print('x' in globals())"), Reply("The state was reset.")]
            )
            client.beta.threads.messages.create(thread.id, role="user", content="again")
            again = client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
            )
            assert again.status == "completed", again.last_error
            (call,) = code_calls(client, again)
            logs = call.code_interpreter.outputs[0].logs
            assert logs.startswith("Note: this is a new Python session")
            assert logs.endswith("False")
    finally:
        server.stop()


def test_a_run_where_no_sandbox_can_start_gets_an_error_output(
    model_server: FakeModelServer,
) -> None:
    env = {**model_env(model_server), "THREADLINE_CODE_INTERPRETER": "off"}
    server = ThreadlineServer(env=env).start()
    try:
        model = unique_model()
        model_server.script(model, [python("print(2 ** 100)"), Reply("I could not run it.")])
        with sdk(server) as client:
            run = run_with_code(client, model, "Compute 2**100 with code")
            assert run.status == "completed", run.last_error
            (call,) = code_calls(client, run)
            (logs,) = call.code_interpreter.outputs
            assert logs.logs == (
                "Code interpreter is unavailable on this server: turned off "
                "(THREADLINE_CODE_INTERPRETER=off). The code did not run."
            )
            status = client.get("/threadline/code_interpreter", cast_to=object)
            assert status == {
                "object": "threadline.code_interpreter",
                "available": False,
                "detail": "turned off (THREADLINE_CODE_INTERPRETER=off)",
            }
    finally:
        server.stop()

"""How a code interpreter call reads on the page: the code as it streams, its output, its
figures, what went wrong in words, and the files its answer links."""

from __future__ import annotations

import re
from html import unescape

import pytest

from chat.live.answer import Call, RunView, code_problem, merge_call
from chat.rendering import message_view

TRACEBACK = (
    "---------------------------------------------------------------------------\n"
    "ZeroDivisionError                         Traceback (most recent call last)\n"
    "Cell In[1], line 1\n"
    "----> 1 1 / 0\n\n"
    "ZeroDivisionError: division by zero"
)


@pytest.mark.parametrize(
    ("logs", "said"),
    [
        ("42", None),
        (TRACEBACK, "The code failed with ZeroDivisionError: division by zero"),
        (
            "Note: Execution interrupted: still running after 60 s (the time limit). The "
            "session goes on: variables and files are kept.",
            "The code was still running at the time limit, so it was stopped.",
        ),
        (
            "working\nNote: the Python session was ended because the Python process ran out "
            "of memory and was killed. The next execution starts a new session: variables are "
            "gone; input files are copied in again.",
            "The code was stopped: the Python process ran out of memory and was killed.",
        ),
        (
            "Code interpreter is unavailable on this server: turned off "
            "(THREADLINE_CODE_INTERPRETER=off). The code did not run.",
            "Code interpreter is unavailable on this server: turned off "
            "(THREADLINE_CODE_INTERPRETER=off). The code did not run.",
        ),
        ("print('ValueError: not raised')\nValueError: not raised", None),
    ],
)
def test_what_went_wrong_is_said_in_words(logs: str, said: str | None) -> None:
    assert code_problem(logs) == said


def test_code_and_output_stream_in_pieces_then_the_step_settles_them() -> None:
    call = Call(kind="code_interpreter")

    def delta(**code: object) -> None:
        data = {"index": 0, "type": "code_interpreter", "code_interpreter": code}
        merge_call(call, data, append=True, files=lambda f: f"/c/1/files/{f}")

    delta(input="print(", outputs=[])
    delta(input="'hi')")
    assert call.arguments == "print('hi')"
    delta(outputs=[{"index": 0, "type": "logs", "logs": "h"}])
    delta(outputs=[{"index": 0, "type": "logs", "logs": "i\n"}])
    delta(outputs=[{"index": 1, "type": "image", "image": {"file_id": "file-png"}}])
    assert call.output == "hi\n" and call.image_urls == ["/c/1/files/file-png"]
    whole = {
        "type": "code_interpreter",
        "code_interpreter": {
            "input": "print('hi')",
            "outputs": [
                {"type": "logs", "logs": "hi"},
                {"type": "image", "image": {"file_id": "file-png"}},
            ],
        },
    }
    merge_call(call, whole, append=False, files=lambda f: f"/c/1/files/{f}")
    assert (call.arguments, call.output) == ("print('hi')", "hi")
    assert call.image_urls == ["/c/1/files/file-png"]


def test_a_live_step_shows_running_code_and_escapes_it() -> None:
    view = RunView.started(7, "run_1")
    step = {"id": "step_1", "step_details": {"type": "tool_calls", "tool_calls": []}}
    view.apply("thread.run.step.created", step)
    fragments = view.apply(
        "thread.run.step.delta",
        {
            "id": "step_1",
            "delta": {
                "step_details": {
                    "type": "tool_calls",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "code_interpreter",
                            "code_interpreter": {"input": "print('<b>')", "outputs": []},
                        }
                    ],
                }
            },
        },
    )
    html = "".join(str(f) for f in fragments)
    assert "Running code…" in html
    # Highlighted by classes, escaped: the text reads as written, and no <b> reaches the page.
    code = re.search(r'<code class="language-python">(.*?)</code>', html, re.S)
    assert code is not None and 'class="tok-' in code.group(1)
    assert unescape(re.sub(r"<[^>]*>", "", code.group(1))).strip() == "print('<b>')"
    assert "&lt;b&gt;" in html and "<b>" not in html


def test_a_file_the_code_wrote_links_to_the_conversations_file_route() -> None:
    text = "Here: [squares.csv](sandbox:/mnt/data/squares.csv), or sandbox:/mnt/data/squares.csv"
    first = text.index("sandbox:")
    second = text.rindex("sandbox:")
    marker = "sandbox:/mnt/data/squares.csv"
    annotations = [
        {
            "type": "file_path",
            "text": marker,
            "start_index": start,
            "end_index": start + len(marker),
            "file_path": {"file_id": "file-abc"},
        }
        for start in (first, second)
    ]
    message = {
        "id": "msg_1",
        "role": "assistant",
        "content": [
            {"type": "image_file", "image_file": {"file_id": "file-png"}},
            {"type": "text", "text": {"value": text, "annotations": annotations}},
        ],
    }
    view = message_view(message, 3, {}, skip_images={"file-png"})
    assert view.html.count('<a href="/c/3/files/file-abc"') == 2
    assert "sandbox:" not in view.html
    # The step shows the figure already; the message does not repeat it.
    assert "<img" not in view.html

"""RunView: what each run event does to the page, without a server."""

from __future__ import annotations

import pytest

from chat.live.answer import RunView, TextPiece, merged


def message(message_id: str, text: str = "", annotations: list[object] | None = None) -> dict:
    return {
        "id": message_id,
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "text", "text": {"value": text, "annotations": annotations or []}}],
    }


def step(step_id: str, calls: list[dict]) -> dict:
    return {"id": step_id, "step_details": {"type": "tool_calls", "tool_calls": calls}}


@pytest.fixture
def view() -> RunView:
    return RunView(conversation_id=3, run_id="run_abc")


def test_text_streams_as_escaped_pieces_then_the_message_renders_whole(view: RunView) -> None:
    assert view.apply("thread.message.delta", {"message_id": "msg_1", "text": "early"}) == []
    (shell,) = view.apply("thread.message.created", message("msg_1"))
    assert 'hx-swap-oob="beforeend:#run-run_abc"' in shell
    assert 'id="m-msg_1-tail"' in shell
    pieces = view.apply("thread.message.delta", {"message_id": "msg_1", "text": "<b>hi"})
    assert pieces == [TextPiece("m-msg_1-tail", "&lt;b&gt;hi")]
    (final,) = view.apply("thread.message.completed", message("msg_1", "**hi**"))
    assert 'id="m-msg_1" hx-swap-oob="true"' in final
    assert "<strong>hi</strong>" in final
    assert view.apply("thread.message.delta", {"message_id": "msg_1", "text": "late"}) == []


def test_adjacent_text_pieces_merge_into_one_swap() -> None:
    html = merged(
        [
            TextPiece("a", "1"),
            TextPiece("a", "2"),
            "<p>x</p>",
            TextPiece("a", "3"),
            TextPiece("b", "4"),
        ]
    )
    assert html == (
        '<span hx-swap-oob="beforeend:#a">12</span><p>x</p>'
        '<span hx-swap-oob="beforeend:#a">3</span><span hx-swap-oob="beforeend:#b">4</span>'
    )


def test_long_answers_get_markdown_checkpoints_on_the_way(view: RunView) -> None:
    view.apply("thread.message.created", message("msg_1"))
    fragments = []
    for i in range(200):
        fragments += view.apply(
            "thread.message.delta", {"message_id": "msg_1", "text": f"**p{i}** words\n\n"}
        )
    checkpoints = [f for f in fragments if isinstance(f, str)]
    assert 2 <= len(checkpoints) <= 8  # at doubling lengths, not per token
    assert "<strong>p0</strong>" in checkpoints[0]
    assert 'id="m-msg_1-text" hx-swap-oob="true"' in checkpoints[-1]


def test_file_search_progress_counts_files_and_results(view: RunView) -> None:
    view.file_count = 3
    (created,) = view.apply("thread.run.step.created", step("step_1", []))
    assert "step-empty" in created
    (searching,) = view.apply(
        "thread.run.step.delta",
        {
            "id": "step_1",
            "delta": {
                "step_details": {
                    "type": "tool_calls",
                    "tool_calls": [{"index": 0, "type": "file_search", "file_search": {}}],
                }
            },
        },
    )
    assert "Searching 3 files…" in searching
    results = {"results": [{"file_id": "f"}, {"file_id": "g"}]}
    (done,) = view.apply(
        "thread.run.step.completed",
        step("step_1", [{"type": "file_search", "file_search": results}]),
    )
    assert "Searched 3 files · 2 results" in done and "running" not in done


def test_function_calls_show_name_arguments_and_result(view: RunView) -> None:
    call = {
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    view.apply("thread.run.step.created", step("step_2", [call]))
    with_output = {**call, "function": {**call["function"], "output": "-3C <snow>"}}
    (done,) = view.apply("thread.run.step.completed", step("step_2", [with_output]))
    assert "Called get_weather" in done
    assert "{&quot;city&quot;: &quot;Oslo&quot;}" in done
    assert "-3C &lt;snow&gt;" in done


def test_a_failed_run_explains_and_offers_retry(view: RunView) -> None:
    view.apply(
        "thread.run.failed",
        {"status": "failed", "last_error": {"code": "server_error", "message": "Model down."}},
    )
    final = view.final()
    assert "The answer failed: Model down." in final
    assert 'role="alert"' in final and ">Retry</button>" in final
    assert "sse-connect" not in final
    assert '<span id="run-controls" class="run-controls" hx-swap-oob="true"></span>' in final


def test_a_stopped_run_keeps_its_partial_text(view: RunView) -> None:
    view.apply("thread.message.created", message("msg_1"))
    view.apply("thread.message.delta", {"message_id": "msg_1", "text": "half an *answ"})
    view.apply("thread.run.cancelled", {"status": "cancelled"})
    view.finish()
    final = view.final()
    assert "half an *answ" in final and "Stopped." in final
    assert "The answer stopped here." in final


def test_snapshot_shows_everything_so_far(view: RunView) -> None:
    view.apply("thread.message.created", message("msg_1"))
    view.apply("thread.message.delta", {"message_id": "msg_1", "text": "so far"})
    snapshot = view.snapshot()
    assert 'id="run-run_abc" hx-swap-oob="true"' in snapshot
    assert "so far" in snapshot and "Thinking…" in snapshot  # hidden by CSS once items exist


def test_a_run_that_expired_waiting_for_answers_says_so(view: RunView) -> None:
    view.stopped_waiting({"status": "cancelled"})
    assert view.notice is None  # a Stop says "Stopped." as any run does
    view.stopped_waiting({"status": "expired"})
    view.finish()
    final = view.final()
    assert "No answer came in time, so the assistant stopped waiting." in final
    assert "Send a new message to go on." in final and 'role="alert"' in final

"""A live answer whose replay log is lost (Redis restarted empty, say), shown from the API.

The log is what a page's stream follows; once it is gone nothing more can come through it. The
stream then ends with the answer as the Assistants API has it (only reads: a stream starts
nothing), so the page shows what there is instead of waiting for events that will not come.
"""

from __future__ import annotations

from chat import assistants_api as api
from chat.live.answer import Notice, RunView
from chat.rendering import cited_file_ids

STILL_ANSWERING = (
    "The live view of this answer was interrupted; it is still being written. Reload the page "
    "in a moment to see the rest."
)


async def final_from_the_api(conversation_id: int, thread_id: str, run_id: str) -> str | None:
    """The fragment that replaces the live answer with what the API has; None if the run is not
    one of this thread's (someone else's, or no one's)."""
    try:
        run = await api.retrieve_run(thread_id, run_id)
        messages = await api.run_messages(thread_id, run_id)
    except api.NotFound:
        return None
    view = RunView.started(conversation_id, run_id)
    for file_id in cited_file_ids(messages):
        try:
            view.file_names[file_id] = str((await api.file_info(file_id))["filename"])
        except api.AssistantsError:
            view.file_names[file_id] = "a file"
    view.finish(messages)
    if run["status"] in api.ACTIVE_STATUSES:
        view.notice = Notice([STILL_ANSWERING])
    else:
        view.run_changed(f"thread.run.{run['status']}", run)
    return view.final()

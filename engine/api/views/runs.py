"""/v1/threads/{thread_id}/runs, /v1/threads/runs and run steps"""

from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse

from engine.api.access import get_owned
from engine.api.bodies import parse
from engine.api.errors import ApiError, not_found
from engine.api.pagination import paginate
from engine.api.schemas import (
    CreateRun,
    CreateThread,
    CreateThreadAndRun,
    ModifyRun,
    SubmitToolOutputs,
    dump,
)
from engine.api.views.threads import new_thread
from engine.messages import add_message
from engine.models import Assistant, Project, Run, RunStep, Thread
from engine.runs import events, lifecycle

SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
# How soon the SDKs' polling helpers (`create_and_poll`, `poll`) ask about a run again; without
# it the Node SDK waits 5 s between polls. A run's status and steps are saved as they change,
# and a model's turn or a search takes from a few hundred milliseconds up, so asking twice a
# second sees each change soon after it happens, for one indexed query per ask.
RUN_POLL_AFTER_MS = "500"


def event_stream(
    subscription: events.Subscription, first: list[tuple[str, Any]] | None = None
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        events.sse_stream(subscription, first), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def run_fields(body: CreateRun | CreateThreadAndRun) -> dict[str, Any]:
    fields = {name: getattr(body, name) for name in body.model_fields_set}
    for name in ("tools", "truncation_strategy"):
        if fields.get(name) is not None:
            value = fields[name]
            fields[name] = [dump(v) for v in value] if isinstance(value, list) else dump(value)
    for name in ("tool_choice", "response_format"):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            fields[name] = dump(fields[name])
    return fields


def start(
    run: Run, stream: bool | None, first: list[tuple[str, Any]] | None = None
) -> HttpResponseBase | dict[str, Any]:
    if stream:
        return event_stream(lifecycle.launch_streaming(run), first)
    lifecycle.launch(run)
    return run.to_api()


def create_run(request: HttpRequest, project: Project, thread_id: str) -> Any:
    thread = get_owned(Thread.objects, project, thread_id, "thread")
    body = parse(request, CreateRun)
    assistant = get_owned(
        Assistant.objects, project, body.assistant_id, "assistant", "assistant_id"
    )
    with transaction.atomic():
        lifecycle.refuse_if_active(thread, "run")
        for message in body.additional_messages or []:
            add_message(thread, message)
        run = lifecycle.new_run(thread, assistant, run_fields(body))
    return start(run, body.stream)


def create_thread_and_run(request: HttpRequest, project: Project) -> Any:
    body = parse(request, CreateThreadAndRun)
    assistant = get_owned(
        Assistant.objects, project, body.assistant_id, "assistant", "assistant_id"
    )
    # metadata has its default inside Annotated[…, Field(default=None)], which mypy cannot see.
    thread_body = body.thread or CreateThread()  # type: ignore[call-arg]
    if body.tool_resources is not None and thread_body.tool_resources is None:
        thread_body.tool_resources = body.tool_resources
    with transaction.atomic():
        thread = new_thread(project, thread_body)
        run = lifecycle.new_run(thread, assistant, run_fields(body))
    # As OpenAI's stream does: the new thread first, then the run's own events.
    return start(run, body.stream, first=[("thread.created", thread.to_api())])


def get_run(project: Project, thread_id: str, run_id: str) -> Run:
    thread = get_owned(Thread.objects, project, thread_id, "thread")
    lifecycle.settle_lost_runs(thread)
    run = thread.runs.filter(pk=run_id).first()
    if run is None:
        raise not_found("run", run_id)
    return run


def list_runs(request: HttpRequest, project: Project, thread_id: str) -> dict[str, Any]:
    thread = get_owned(Thread.objects, project, thread_id, "thread")
    lifecycle.settle_lost_runs(thread)
    return paginate(request, thread.runs.all(), Run.to_api)


def retrieve_run(
    request: HttpRequest, project: Project, thread_id: str, run_id: str
) -> JsonResponse:
    response = JsonResponse(get_run(project, thread_id, run_id).to_api())
    response["openai-poll-after-ms"] = RUN_POLL_AFTER_MS
    return response


def modify_run(
    request: HttpRequest, project: Project, thread_id: str, run_id: str
) -> dict[str, Any]:
    run = get_run(project, thread_id, run_id)
    body = parse(request, ModifyRun)
    if "metadata" in body.model_fields_set:
        run.metadata = body.metadata or {}
        run.save(update_fields=["metadata"])
    return run.to_api()


def cancel_run(
    request: HttpRequest, project: Project, thread_id: str, run_id: str
) -> dict[str, Any]:
    return lifecycle.cancel(get_run(project, thread_id, run_id)).to_api()


def submit_tool_outputs(request: HttpRequest, project: Project, thread_id: str, run_id: str) -> Any:
    run = get_run(project, thread_id, run_id)
    body = parse(request, SubmitToolOutputs)
    lifecycle.record_tool_outputs(run, [dump(output) for output in body.tool_outputs])
    if body.stream:
        return event_stream(lifecycle.launch_streaming(run, resume=True))
    lifecycle.launch(run, resume=True)
    return run.to_api()


def includes_search_content(request: HttpRequest) -> bool:
    include = request.GET.getlist("include[]") + request.GET.getlist("include")
    unknown = [value for value in include if value != SEARCH_CONTENT]
    if unknown:
        raise ApiError(400, f"Invalid value for 'include[]': {unknown[0]!r}.", param="include[]")
    return bool(include)


def list_steps(
    request: HttpRequest, project: Project, thread_id: str, run_id: str
) -> dict[str, Any]:
    run = get_run(project, thread_id, run_id)
    content = includes_search_content(request)
    return paginate(request, RunStep.objects.filter(run=run), lambda step: step.to_api(content))


def retrieve_step(
    request: HttpRequest, project: Project, thread_id: str, run_id: str, step_id: str
) -> dict[str, Any]:
    run = get_run(project, thread_id, run_id)
    step = RunStep.objects.filter(run=run, pk=step_id).first()
    if step is None:
        raise not_found("run step", step_id)
    return step.to_api(includes_search_content(request))

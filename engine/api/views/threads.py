"""/v1/threads"""

from typing import Any

from django.db import transaction
from django.http import HttpRequest

from engine.api.access import get_owned
from engine.api.bodies import parse
from engine.api.schemas import CreateThread, ModifyThread
from engine.knowledge.resources import tool_resources_for
from engine.messages import add_message
from engine.models import Project, Thread


def new_thread(project: Project, body: CreateThread) -> Thread:
    with transaction.atomic():
        thread = Thread(
            project=project,
            metadata=body.metadata or {},
            tool_resources=tool_resources_for(project, body.tool_resources),
        )
        thread.save()
        for message in body.messages or []:
            add_message(thread, message)
    return thread


def create_thread(request: HttpRequest, project: Project) -> dict[str, Any]:
    return new_thread(project, parse(request, CreateThread)).to_api()


def retrieve_thread(request: HttpRequest, project: Project, thread_id: str) -> dict[str, Any]:
    return get_owned(Thread.objects, project, thread_id, "thread").to_api()


def modify_thread(request: HttpRequest, project: Project, thread_id: str) -> dict[str, Any]:
    thread = get_owned(Thread.objects, project, thread_id, "thread")
    body = parse(request, ModifyThread)
    if "metadata" in body.model_fields_set:
        thread.metadata = body.metadata or {}
    if "tool_resources" in body.model_fields_set:
        thread.tool_resources = tool_resources_for(project, body.tool_resources)
    thread.save()
    return thread.to_api()


def delete_thread(request: HttpRequest, project: Project, thread_id: str) -> dict[str, Any]:
    thread = get_owned(Thread.objects, project, thread_id, "thread")
    thread.delete()
    return {"id": thread_id, "object": "thread.deleted", "deleted": True}

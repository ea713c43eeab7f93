"""/v1/threads/{thread_id}/messages"""

from typing import Any

from django.http import HttpRequest

from engine.api.access import get_owned
from engine.api.bodies import parse
from engine.api.errors import not_found
from engine.api.pagination import paginate
from engine.api.schemas import CreateMessage, ModifyMessage
from engine.messages import add_message
from engine.models import Message, Project, Thread
from engine.runs import lifecycle


def get_message(project: Project, thread_id: str, message_id: str) -> Message:
    thread = get_owned(Thread.objects, project, thread_id, "thread")
    message = thread.messages.filter(pk=message_id).first()
    if message is None:
        raise not_found("message", message_id)
    return message


def create_message(request: HttpRequest, project: Project, thread_id: str) -> dict[str, Any]:
    thread = get_owned(Thread.objects, project, thread_id, "thread")
    body = parse(request, CreateMessage)
    lifecycle.refuse_if_active(thread, "message")
    return add_message(thread, body).to_api()


def list_messages(request: HttpRequest, project: Project, thread_id: str) -> dict[str, Any]:
    thread = get_owned(Thread.objects, project, thread_id, "thread")
    messages = thread.messages.all()
    if request.GET.get("run_id"):
        messages = messages.filter(run_id=request.GET["run_id"])
    return paginate(request, messages, Message.to_api)


def retrieve_message(
    request: HttpRequest, project: Project, thread_id: str, message_id: str
) -> dict[str, Any]:
    return get_message(project, thread_id, message_id).to_api()


def modify_message(
    request: HttpRequest, project: Project, thread_id: str, message_id: str
) -> dict[str, Any]:
    message = get_message(project, thread_id, message_id)
    body = parse(request, ModifyMessage)
    if "metadata" in body.model_fields_set:
        message.metadata = body.metadata or {}
        message.save(update_fields=["metadata"])
    return message.to_api()


def delete_message(
    request: HttpRequest, project: Project, thread_id: str, message_id: str
) -> dict[str, Any]:
    message = get_message(project, thread_id, message_id)
    message.delete()
    return {"id": message_id, "object": "thread.message.deleted", "deleted": True}

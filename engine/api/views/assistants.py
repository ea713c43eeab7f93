"""/v1/assistants"""

from typing import Any

from django.http import HttpRequest

from engine.api.access import get_owned
from engine.api.bodies import parse
from engine.api.pagination import paginate
from engine.api.schemas import CreateAssistant, ModifyAssistant, dump
from engine.knowledge.resources import tool_resources_for
from engine.models import Assistant, Project


def create_assistant(request: HttpRequest, project: Project) -> dict[str, Any]:
    body = parse(request, CreateAssistant)
    assistant = Assistant(
        project=project,
        model=body.model,
        name=body.name,
        description=body.description,
        instructions=body.instructions,
        tools=[dump(tool) for tool in body.tools or []],
        tool_resources=tool_resources_for(project, body.tool_resources),
        metadata=body.metadata or {},
        temperature=body.temperature,
        top_p=body.top_p,
        response_format=dump_format(body.response_format),
    )
    assistant.save()
    return assistant.to_api()


def dump_format(value: Any) -> Any:
    return "auto" if value is None else value if isinstance(value, str) else dump(value)


def list_assistants(request: HttpRequest, project: Project) -> dict[str, Any]:
    return paginate(request, Assistant.objects.filter(project=project), Assistant.to_api)


def retrieve_assistant(request: HttpRequest, project: Project, assistant_id: str) -> dict[str, Any]:
    return get_owned(Assistant.objects, project, assistant_id, "assistant").to_api()


def modify_assistant(request: HttpRequest, project: Project, assistant_id: str) -> dict[str, Any]:
    assistant = get_owned(Assistant.objects, project, assistant_id, "assistant")
    body = parse(request, ModifyAssistant)
    given = body.model_fields_set
    for name in ("model", "name", "description", "instructions", "temperature", "top_p"):
        if name in given:
            setattr(assistant, name, getattr(body, name))
    if "tools" in given:
        assistant.tools = [dump(tool) for tool in body.tools or []]
    if "tool_resources" in given:
        assistant.tool_resources = tool_resources_for(project, body.tool_resources)
    if "metadata" in given:
        assistant.metadata = body.metadata or {}
    if "response_format" in given:
        assistant.response_format = dump_format(body.response_format)
    if not assistant.model:
        assistant.model = Assistant.objects.get(pk=assistant.pk).model
    assistant.save()
    return assistant.to_api()


def delete_assistant(request: HttpRequest, project: Project, assistant_id: str) -> dict[str, Any]:
    assistant = get_owned(Assistant.objects, project, assistant_id, "assistant")
    assistant.delete()
    return {"id": assistant_id, "object": "assistant.deleted", "deleted": True}

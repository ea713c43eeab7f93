"""/v1/threadline/code_interpreter: whether this server can run code, and if not why.

Not an OpenAI path (the hosted API always could): an extra of this engine, for the chat's admin.
"""

from typing import Any

from django.http import HttpRequest

from engine.models import Project
from engine.tools.code_interpreter import tool


def code_interpreter_status(request: HttpRequest, project: Project) -> dict[str, Any]:
    status = tool.sessions().status()
    return {
        "object": "threadline.code_interpreter",
        "available": status.available,
        "detail": status.detail,
    }

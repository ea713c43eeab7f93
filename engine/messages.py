"""Adding messages to threads, from any endpoint that accepts them."""

from __future__ import annotations

from typing import Any

from engine.api.schemas import CreateMessage, dump
from engine.knowledge.files import check_files
from engine.knowledge.stores import add_to_thread_store
from engine.models import Message, Project, Thread


def content_parts(content: str | list[Any], project: Project) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": {"value": content, "annotations": []}}]
    parts = []
    for part in content:
        if part.type == "text":
            parts.append({"type": "text", "text": {"value": part.text, "annotations": []}})
        else:
            if part.type == "image_file":
                check_files(project, [part.image_file.file_id], "content.image_file.file_id")
            parts.append(dump(part))
    return parts


def add_message(thread: Thread, body: CreateMessage) -> Message:
    attachments = [dump(attachment) for attachment in body.attachments or []]
    check_files(thread.project, [a["file_id"] for a in attachments], "attachments.file_id")
    message = Message.objects.create(
        project=thread.project,
        thread=thread,
        role=body.role,
        content=content_parts(body.content, thread.project),
        attachments=attachments,
        metadata=body.metadata or {},
    )
    searchable = [
        a["file_id"] for a in attachments if any(t["type"] == "file_search" for t in a["tools"])
    ]
    if searchable:
        add_to_thread_store(thread, searchable)
    return message

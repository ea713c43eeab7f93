"""tool_resources: the files and vector stores a thread or assistant brings to its runs."""

from __future__ import annotations

from typing import Any

from engine.api.errors import ApiError
from engine.api.schemas import ToolResources
from engine.knowledge.files import check_files
from engine.knowledge.stores import create_store
from engine.models import Project, VectorStore


def tool_resources_for(project: Project, resources: ToolResources | None) -> dict[str, Any]:
    """Validate ids inside the caller's project, creating any vector store asked for inline."""
    result: dict[str, Any] = {}
    if resources is None:
        return result
    if resources.code_interpreter is not None:
        file_ids = resources.code_interpreter.file_ids
        check_files(project, file_ids, "tool_resources.code_interpreter.file_ids")
        result["code_interpreter"] = {"file_ids": file_ids}
    search = resources.file_search
    if search is not None:
        store_ids = list(search.vector_store_ids or [])
        for store_id in store_ids:
            if not VectorStore.objects.filter(project=project, pk=store_id).exists():
                raise ApiError(
                    404,
                    f"No vector store found with id '{store_id}'.",
                    param="tool_resources.file_search.vector_store_ids",
                )
        for spec in search.vector_stores or []:
            check_files(project, spec.file_ids, "tool_resources.file_search.vector_stores.file_ids")
            store = create_store(
                project,
                file_ids=spec.file_ids,
                chunking_strategy=spec.chunking_strategy,
                metadata=spec.metadata or {},
            )
            store_ids.append(store.id)
        if len(store_ids) > 1:
            raise ApiError(
                400,
                "A thread or assistant can have at most 1 vector store attached.",
                param="tool_resources.file_search",
            )
        result["file_search"] = {"vector_store_ids": store_ids}
    return result

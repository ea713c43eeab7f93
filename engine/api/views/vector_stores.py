"""/v1/vector_stores, their files, file batches and search."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse

from engine.api.access import get_owned
from engine.api.bodies import parse
from engine.api.errors import ApiError
from engine.api.pagination import paginate
from engine.api.schemas import (
    CreateFileBatch,
    CreateVectorStore,
    CreateVectorStoreFile,
    ModifyVectorStore,
    SearchVectorStore,
    UpdateVectorStoreFile,
)
from engine.knowledge import hybrid, store_search, stores
from engine.knowledge.search import Hit
from engine.models import FileBatch, Project, VectorStore, VectorStoreFile

FILE_STATUSES = ("in_progress", "completed", "failed", "cancelled")
# How soon the SDK's polling helpers (`upload_and_poll`, ...) ask again; ingesting takes
# fractions of a second for most files.
POLL_AFTER_MS = "200"

# --- Vector stores --------------------------------------------------------------------------------


def owned_store(project: Project, vector_store_id: str) -> VectorStore:
    return get_owned(VectorStore.objects, project, vector_store_id, "vector store")


def create_vector_store(request: HttpRequest, project: Project) -> dict[str, Any]:
    body = parse(request, CreateVectorStore)
    store = stores.create_store(
        project,
        file_ids=body.file_ids,
        chunking_strategy=body.chunking_strategy,
        metadata=body.metadata or {},
        name=body.name,
        description=body.description,
        expires_after=body.expires_after,
    )
    return store.to_api()


def list_vector_stores(request: HttpRequest, project: Project) -> dict[str, Any]:
    return paginate(request, VectorStore.objects.filter(project=project), VectorStore.to_api)


def retrieve_vector_store(
    request: HttpRequest, project: Project, vector_store_id: str
) -> dict[str, Any]:
    return owned_store(project, vector_store_id).to_api()


def modify_vector_store(
    request: HttpRequest, project: Project, vector_store_id: str
) -> dict[str, Any]:
    store = owned_store(project, vector_store_id)
    body = parse(request, ModifyVectorStore)
    given = body.model_fields_set
    if "name" in given:
        store.name = body.name
    if "expires_after" in given:
        stores.set_expiry(store, body.expires_after)
    if "metadata" in given:
        store.metadata = body.metadata or {}
    store.save()
    return store.to_api()


def delete_vector_store(
    request: HttpRequest, project: Project, vector_store_id: str
) -> dict[str, Any]:
    stores.delete_store(owned_store(project, vector_store_id))
    return {"id": vector_store_id, "object": "vector_store.deleted", "deleted": True}


def search_vector_store(
    request: HttpRequest, project: Project, vector_store_id: str
) -> dict[str, Any]:
    store = owned_store(project, vector_store_id)
    body = parse(request, SearchVectorStore)
    ranking = body.ranking_options
    queries = [hybrid.rewrite(q) for q in body.queries()] if body.rewrite_query else body.queries()
    hits = store_search.search_store(
        store,
        queries,
        max_results=body.max_num_results,
        score_threshold=ranking.score_threshold if ranking else 0.0,
        filters=body.filters,
    )
    return {
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": [search_result(hit) for hit in hits],
        "has_more": False,
        "next_page": None,
    }


def search_result(hit: Hit) -> dict[str, Any]:
    return {
        "file_id": hit.file_id,
        "filename": hit.filename,
        "score": hit.score,
        "attributes": hit.attributes,
        "content": [{"type": "text", "text": hit.text}],
        # Not in OpenAI's shape: the page the chunk comes from, for citations.
        "page": hit.page,
    }


# --- Vector store files ---------------------------------------------------------------------------


def owned_store_file(project: Project, vector_store_id: str, file_id: str) -> VectorStoreFile:
    store = owned_store(project, vector_store_id)
    row = store.files.filter(file_id=file_id).first()
    if row is None:
        raise ApiError(
            404, f"No file found with id '{file_id}' in vector store '{vector_store_id}'."
        )
    return row


def with_poll_hint(data: dict[str, Any]) -> JsonResponse:
    response = JsonResponse(data)
    response["openai-poll-after-ms"] = POLL_AFTER_MS
    return response


def status_filter(request: HttpRequest, rows: QuerySet[VectorStoreFile]) -> QuerySet[Any]:
    status = request.GET.get("filter")
    if not status:
        return rows
    if status not in FILE_STATUSES:
        raise ApiError(
            400,
            f"Invalid value for 'filter': '{status}' is not one of {', '.join(FILE_STATUSES)}.",
            param="filter",
            code="invalid_value",
        )
    return rows.filter(status=status)


def create_store_file(
    request: HttpRequest, project: Project, vector_store_id: str
) -> dict[str, Any]:
    store = owned_store(project, vector_store_id)
    body = parse(request, CreateVectorStoreFile)
    [row] = stores.attach(store, [body], param="file_id")
    return row.to_api()


def list_store_files(
    request: HttpRequest, project: Project, vector_store_id: str
) -> dict[str, Any]:
    rows = status_filter(request, owned_store(project, vector_store_id).files.all())
    return paginate(request, rows, VectorStoreFile.to_api, cursor_field="file_id")


def retrieve_store_file(
    request: HttpRequest, project: Project, vector_store_id: str, file_id: str
) -> JsonResponse:
    return with_poll_hint(owned_store_file(project, vector_store_id, file_id).to_api())


def update_store_file(
    request: HttpRequest, project: Project, vector_store_id: str, file_id: str
) -> dict[str, Any]:
    row = owned_store_file(project, vector_store_id, file_id)
    row.attributes = parse(request, UpdateVectorStoreFile).attributes or {}
    row.save(update_fields=["attributes"])
    return row.to_api()


def delete_store_file(
    request: HttpRequest, project: Project, vector_store_id: str, file_id: str
) -> dict[str, Any]:
    row = owned_store_file(project, vector_store_id, file_id)
    stores.remove_store_files(VectorStoreFile.objects.filter(pk=row.pk))
    return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}


def store_file_content(
    request: HttpRequest, project: Project, vector_store_id: str, file_id: str
) -> dict[str, Any]:
    row = owned_store_file(project, vector_store_id, file_id)
    texts = row.chunks.order_by("index").values_list("text", flat=True)
    return {
        "object": "vector_store.file_content.page",
        "data": [{"type": "text", "text": text} for text in texts],
        "has_more": False,
        "next_page": None,
    }


# --- File batches ---------------------------------------------------------------------------------


def owned_batch(project: Project, vector_store_id: str, batch_id: str) -> FileBatch:
    store = owned_store(project, vector_store_id)
    batches = FileBatch.objects.filter(vector_store=store)
    return get_owned(batches, project, batch_id, "vector store file batch")


def create_file_batch(
    request: HttpRequest, project: Project, vector_store_id: str
) -> dict[str, Any]:
    store = owned_store(project, vector_store_id)
    body = parse(request, CreateFileBatch)
    if (body.file_ids is None) == (body.files is None):
        raise ApiError(400, "Give exactly one of 'file_ids' and 'files'.", param="file_ids")
    param = "file_ids" if body.file_ids is not None else "files.file_id"
    return stores.create_batch(store, body.entries(), param).to_api()


def retrieve_file_batch(
    request: HttpRequest, project: Project, vector_store_id: str, batch_id: str
) -> JsonResponse:
    return with_poll_hint(owned_batch(project, vector_store_id, batch_id).to_api())


def cancel_file_batch(
    request: HttpRequest, project: Project, vector_store_id: str, batch_id: str
) -> dict[str, Any]:
    batch = owned_batch(project, vector_store_id, batch_id)
    stores.cancel_batch(batch)
    return batch.to_api()


def list_batch_files(
    request: HttpRequest, project: Project, vector_store_id: str, batch_id: str
) -> dict[str, Any]:
    rows = status_filter(request, owned_batch(project, vector_store_id, batch_id).files.all())
    return paginate(request, rows, VectorStoreFile.to_api, cursor_field="file_id")

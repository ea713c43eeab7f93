"""OpenAI's cursor pagination of lists (`limit`, `order`, `after`, `before`, `has_more`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
from django.db import models
from django.http import HttpRequest

from engine.api.bodies import validate
from engine.api.errors import ApiError


class ListParams(pydantic.BaseModel):
    limit: int = pydantic.Field(20, ge=1)
    order: str = pydantic.Field("desc", pattern="^(asc|desc)$")
    after: str | None = None
    before: str | None = None


def list_params(request: HttpRequest, max_limit: int) -> ListParams:
    keys = ("limit", "order", "after", "before")
    data = {k: request.GET[k] for k in keys if request.GET.get(k)}
    params = validate(data, ListParams)
    if params.limit > max_limit:
        raise ApiError(
            400,
            f"Invalid value for 'limit': must be between 1 and {max_limit}.",
            param="limit",
            code="invalid_value",
        )
    return params


def paginate(
    request: HttpRequest,
    queryset: models.QuerySet[Any],
    serialise: Callable[[Any], dict[str, Any]],
    cursor_field: str = "id",
    max_limit: int = 100,
) -> dict[str, Any]:
    """OpenAI's cursor pagination over `created_at`, ties broken by the cursor field."""
    params = list_params(request, max_limit)
    ascending = params.order == "asc"
    keys = ("created_at", cursor_field) if ascending else ("-created_at", "-" + cursor_field)
    queryset = queryset.order_by(*keys)
    if params.after:
        queryset = queryset.filter(beyond(queryset, params.after, cursor_field, ascending))
    if params.before:
        queryset = queryset.filter(beyond(queryset, params.before, cursor_field, not ascending))
        # "before" pages are the ones nearest the cursor: take them from the far end, then flip.
        rows = list(queryset.reverse()[: params.limit + 1])
        has_more = len(rows) > params.limit
        rows = rows[: params.limit][::-1]
    else:
        rows = list(queryset[: params.limit + 1])
        has_more = len(rows) > params.limit
        rows = rows[: params.limit]
    data = [serialise(row) for row in rows]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def beyond(
    queryset: models.QuerySet[Any], cursor: str, cursor_field: str, ascending: bool
) -> models.Q:
    anchor = queryset.filter(**{cursor_field: cursor}).values("created_at").first()
    if anchor is None:
        raise ApiError(400, f"Invalid cursor: no object with id '{cursor}' in this list.")
    created = anchor["created_at"]
    if ascending:
        return models.Q(created_at__gt=created) | models.Q(
            created_at=created, **{cursor_field + "__gt": cursor}
        )
    return models.Q(created_at__lt=created) | models.Q(
        created_at=created, **{cursor_field + "__lt": cursor}
    )

"""The HTTP edge of the engine: keys, JSON bodies, errors in OpenAI's shape, pagination."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pydantic
from django.conf import settings
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from engine.models import ApiKey, Project

log = logging.getLogger(__name__)

Schema = TypeVar("Schema", bound=pydantic.BaseModel)
Handler = Callable[..., Any]


class ApiError(Exception):
    """An error the client caused or must know about, rendered as OpenAI's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JsonResponse:
        return JsonResponse(self.body(), status=self.status)


def not_found(noun: str, object_id: str, param: str | None = None) -> ApiError:
    return ApiError(404, f"No {noun} found with id '{object_id}'.", param=param)


def api_view(**handlers: Handler) -> Callable[..., HttpResponseBase]:
    """Build a view that authenticates the key and fans out to one handler per HTTP verb.

    Handlers take `(request, project, **url_kwargs)` and return a dict (sent as JSON) or a
    response. Any `ApiError` becomes OpenAI's error envelope; nothing else leaks a stack trace.
    """

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        try:
            project = authenticate(request)
            handler = handlers.get(request.method or "")
            if handler is None:
                raise ApiError(
                    405,
                    f"Invalid method for URL ({request.method} {request.path}).",
                    code="method_not_allowed",
                )
            result = handler(request, project, **kwargs)
        except ApiError as error:
            return error.response()
        except Exception:
            log.exception("Unexpected error in %s %s", request.method, request.path)
            return ApiError(
                500,
                "The server had an error while processing your request. Sorry about that!",
                type="server_error",
                code="server_error",
            ).response()
        if isinstance(result, HttpResponseBase):
            return result
        return JsonResponse(result)

    view.allowed_methods = sorted(handlers)  # type: ignore[attr-defined]
    return view


def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    error = ApiError(404, f"Invalid URL ({request.method} {request.path}).", code="not_found")
    return error.response()


# --- Authentication -------------------------------------------------------------------------------


def authenticate(request: HttpRequest) -> Project:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    project = project_for_key(key)
    if project is None:
        raise ApiError(
            401,
            f"Incorrect API key provided: {redact(key)}. Ask your Threadline admin for a key.",
            code="invalid_api_key",
        )
    return project


def project_for_key(key: str) -> Project | None:
    for allowed in settings.THREADLINE_API_KEYS:
        if hmac.compare_digest(allowed.encode(), key.encode()):
            return Project.default()
    api_key = (
        ApiKey.objects.select_related("project")
        .filter(key_hash=ApiKey.hash(key), revoked_at__isnull=True)
        .first()
    )
    if api_key is None:
        return None
    now = timezone.now()
    # One write a minute per key is plenty for "last used" and spares the database.
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key.project


def redact(key: str) -> str:
    return key[:3] + "*" * 8 + key[-4:] if len(key) > 8 else "*" * len(key)


# --- Request bodies -------------------------------------------------------------------------------


def json_body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. The API expects a JSON "
            "payload, but what was sent was not valid JSON.",
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return data


def parse(request: HttpRequest, schema: type[Schema]) -> Schema:
    return validate(json_body(request), schema)


def validate(data: dict[str, Any], schema: type[Schema]) -> Schema:
    try:
        return schema.model_validate(data)
    except pydantic.ValidationError as error:
        raise validation_error(error) from None


def validation_error(error: pydantic.ValidationError) -> ApiError:
    first = error.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        return ApiError(
            400,
            f"Unrecognized request argument supplied: {param}",
            param=param,
            code="unknown_parameter",
        )
    if first["type"] == "missing":
        return ApiError(
            400,
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(
        400, f"Invalid value for '{param}': {message}", param=param, code="invalid_value"
    )


# --- Lookups and lists ----------------------------------------------------------------------------

Model = TypeVar("Model", bound=models.Model)


def get_owned(
    queryset: models.QuerySet[Model],
    project: Project,
    object_id: str,
    noun: str,
    param: str | None = None,
) -> Model:
    """The one way the engine loads an object by id: inside the caller's project, or a 404."""
    obj = queryset.filter(project=project, pk=object_id).first()
    if obj is None:
        raise not_found(noun, object_id, param)
    return obj


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

"""Request bodies: JSON validated by the pydantic schemas, errors worded as OpenAI words them."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pydantic
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from engine.api.errors import ApiError

Schema = TypeVar("Schema", bound=pydantic.BaseModel)


def json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = request.body
    except RequestDataTooBig:
        # The server refuses larger bodies as they arrive (config/bodies.py); this is the
        # same limit, should Django's be the smaller one.
        raise ApiError(413, "The request body is too large.", code="request_too_large") from None
    if not body:
        return {}
    try:
        data = json.loads(body)
    except RecursionError:
        raise ApiError(400, "The JSON body of your request is nested too deeply.") from None
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
        raise validation_error(error, data) from None
    except RecursionError:
        raise ApiError(400, "The JSON body of your request is nested too deeply.") from None


# Errors that only say an input is not the other members of a union: the one that says what is
# wrong with the member the input meant is worth more.
UNION_MISSES = {"literal_error", "model_attributes_type", "model_type", "union_tag_invalid"}


def most_telling(errors: list[Any]) -> Any:
    """The error about the deepest part of the input, preferring one that is not a union miss."""
    return max(errors, key=lambda e: (e["type"] not in UNION_MISSES, len(e["loc"])))


def param_path(loc: tuple[int | str, ...], data: Any, missing: bool) -> str | None:
    """OpenAI's name for the part of the input an error is about, such as
    `response_format.json_schema.name` or `tools[0].type`.

    pydantic's location also names union members and their tags (`tagged-union[...]`,
    `json_schema`); those are not in the input, so the path follows the input and skips them.
    For a `missing` error the last part is kept although it is not there: it is what is missing.
    """
    parts: list[str] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parts.append(f"[{part}]")
            node = node[part]
        elif isinstance(node, dict) and part in node:
            parts.append(f".{part}")
            node = node[part]
        elif missing and i == len(loc) - 1:
            parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).removeprefix(".") or None


def validation_error(error: pydantic.ValidationError, data: Any) -> ApiError:
    first = most_telling(error.errors())
    param = param_path(tuple(first["loc"]), data, missing=first["type"] == "missing")
    if first["type"] == "string_too_long":
        maximum = first["ctx"]["max_length"]
        return ApiError(
            400,
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{maximum}, but got a string with length {len(first['input'])} instead.",
            param=param,
            code="string_above_max_length",
        )
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

"""Request bodies: JSON validated by the pydantic schemas, errors worded as OpenAI words them."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pydantic
from django.http import HttpRequest

from engine.api.errors import ApiError

Schema = TypeVar("Schema", bound=pydantic.BaseModel)


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

"""Where OpenAI's published spec is wrong about what its API sends, and Threadline sends what
the API and the SDKs do: the one list of the engine's departures from the spec, each with why.

`tests/wire/openai-assistants-v2.openapi.yaml` is the spec slice as OpenAI publishes it
(copied from ../shared/spec, which CI may not have beside the repository). `corrected_spec()`
applies this list to it before schemathesis checks the engine's responses against it; nothing
else is relaxed. Anything schemathesis finds beyond this list is the engine's to fix.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SPEC = Path(__file__).resolve().parent / "openai-assistants-v2.openapi.yaml"

LISTS = (
    "ListAssistantsResponse",
    "ListFilesResponse",
    "ListMessagesResponse",
    "ListRunStepsResponse",
    "ListRunsResponse",
    "ListVectorStoreFilesResponse",
    "ListVectorStoresResponse",
)


Schemas = dict[str, Any]


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def empty_list_ids(schemas: Schemas) -> None:
    for name in LISTS:
        properties = schemas[name]["properties"]
        for prop in ("first_id", "last_id"):
            properties[prop] = nullable(properties[prop])


def evals_purpose(schemas: Schemas) -> None:
    schemas["OpenAIFile"]["properties"]["purpose"]["enum"].append("evals")


@dataclass(frozen=True)
class Deviation:
    where: str
    why: str
    correct: Callable[[Schemas], None]


DEVIATIONS = (
    Deviation(
        "first_id and last_id of every list response",
        "An empty list has no first or last object: OpenAI sends null for both, and the SDKs "
        "type them Optional[str] (Python) and string | null (Node); the spec says string.",
        empty_list_ids,
    ),
    Deviation(
        "OpenAIFile.purpose",
        "The spec's CreateFileRequest accepts purpose 'evals', and a file keeps the purpose it "
        "was uploaded with, but the spec's file object leaves 'evals' out of its enum.",
        evals_purpose,
    ),
)


@cache
def published_spec() -> dict[str, Any]:
    with SPEC.open() as f:
        spec: dict[str, Any] = yaml.safe_load(f)
    return spec


def corrected_spec() -> dict[str, Any]:
    spec = copy.deepcopy(published_spec())
    for deviation in DEVIATIONS:
        deviation.correct(spec["components"]["schemas"])
    return spec

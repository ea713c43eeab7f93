"""/v1/models: what a run's `model` may name, for pickers such as the admin's."""

import time
from typing import Any

from django.http import HttpRequest

from engine.models import Project
from engine.providers.chat_completions import available_models
from engine.providers.choice import OFFLINE_MODEL

# Listing asks the model API over the network; once a minute is fresh enough for a picker.
CACHE_SECONDS = 60
_cache: tuple[float, list[str]] = (0.0, [])


def list_models(request: HttpRequest, project: Project) -> dict[str, Any]:
    global _cache
    listed_at, names = _cache
    if time.monotonic() - listed_at > CACHE_SECONDS:
        names = available_models()
        _cache = (time.monotonic(), names)
    models = [
        {"id": name, "object": "model", "created": 0, "owned_by": "model-api"} for name in names
    ]
    models.append({"id": OFFLINE_MODEL, "object": "model", "created": 0, "owned_by": "threadline"})
    return {"object": "list", "data": models}

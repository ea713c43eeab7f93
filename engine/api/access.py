"""Who may see what: the project a bearer key opens, and lookups only inside it."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import models
from django.http import HttpRequest
from django.utils import timezone

from engine.api import key_use
from engine.api.errors import ApiError, not_found
from engine.models import ApiKey, Project
from engine.rates import Rate


@dataclass(frozen=True)
class Caller:
    """Who a request's key says is calling: its project, and what limits its requests."""

    project: Project
    key_id: str  # names the key in rate-limit counters, never the key itself
    rate: Rate | None


def authenticate(request: HttpRequest) -> Caller:
    """Who the request's key says is calling: `Authorization: Bearer <key>`, or Azure OpenAI's
    `api-key: <key>` header, which code written for Azure sends instead. Nothing else counts,
    a session cookie least of all."""
    key = presented_key(request)
    if not key:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), "
            "or in an api-key header as Azure OpenAI clients do.",
            code="missing_api_key",
        )
    caller = caller_for_key(key)
    if caller is None:
        raise ApiError(
            401,
            f"Incorrect API key provided: {redact(key)}. Ask your Threadline admin for a key.",
            code="invalid_api_key",
        )
    return caller


def presented_key(request: HttpRequest) -> str:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, key = header.partition(" ")
        return key.strip() if scheme.lower() == "bearer" else ""
    return request.headers.get("api-key", "").strip()


def project_for_key(key: str) -> Project | None:
    caller = caller_for_key(key)
    return caller.project if caller is not None else None


def caller_for_key(key: str) -> Caller | None:
    for allowed in settings.THREADLINE_API_KEYS:
        if hmac.compare_digest(allowed.encode(), key.encode()):
            # The operator's own keys are not rate-limited. The chat's own key, if it is one
            # of these, opens the chat's project; the others are scripts', which see none of
            # the chat's people's threads and files.
            name = hashlib.sha256(allowed.encode()).hexdigest()[:16]
            chat_key = settings.ASSISTANTS_KEY
            if chat_key and hmac.compare_digest(chat_key.encode(), key.encode()):
                return Caller(Project.chat(), f"env-{name}", None)
            return Caller(Project.default(), f"env-{name}", None)
    api_key = (
        ApiKey.objects.select_related("project")
        .filter(key_hash=ApiKey.hash(key), revoked_at__isnull=True)
        .first()
    )
    if api_key is None:
        return None
    now = timezone.now()
    # One write a minute per key is plenty for "last used" and spares the database; it is
    # written in the background, so that no request waits for the database's lock for it.
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
        key_use.note(api_key.pk, now)
    return Caller(api_key.project, f"key-{api_key.pk}", api_key.rate())


def redact(key: str) -> str:
    return key[:3] + "*" * 8 + key[-4:] if len(key) > 8 else "*" * len(key)


Model = TypeVar("Model", bound=models.Model)


def get_owned(
    queryset: models.QuerySet[Model] | models.Manager[Model],
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

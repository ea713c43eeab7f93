"""Which models the Assistants API lists, and whether any of them is a language model.

Threadline's engine lists a configured model API's models, and its own offline retrieval model
as owned by "threadline"; with no model API, that is all it lists, and any model name is served
by the offline model. Any other Assistants API lists only its own models. The list is
remembered for a minute (none while the API is away): the admin's model box, its warning and
the titles all ask.
"""

from __future__ import annotations

from django.core.cache import cache

from chat import assistants_api as api

CACHE_KEY = "chat:model-catalog"
CACHE_SECONDS = 60
OFFLINE_OWNER = "threadline"


def models() -> list[api.Model]:
    found: list[api.Model] | None = cache.get(CACHE_KEY)
    if found is None:
        try:
            found = api.model_catalog()
        except api.AssistantsError:
            found = []
        cache.set(CACHE_KEY, found, CACHE_SECONDS)
    return found


def names() -> list[str]:
    return [model.id for model in models()]


def language_model_listed() -> bool:
    """Whether the API lists a model that is not Threadline's offline one."""
    return any(model.owned_by != OFFLINE_OWNER for model in models())


def is_offline(name: str) -> bool:
    """Whether runs of this model would be answered by the offline retrieval model."""
    listed_offline = {m.id for m in models() if m.owned_by == OFFLINE_OWNER}
    return name in listed_offline or not language_model_listed()


def unknown(name: str) -> bool:
    """A model that the configured model API does not list (offline, every name is known)."""
    return language_model_listed() and name not in names()

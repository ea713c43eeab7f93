"""A profile's remote assistant: the one place that creates it or brings it in line.

The admin calls `save` when a profile is saved (or "Sync now"); the chat calls it on a profile's
first use, and after an edit. Both may run at once in several processes, so nothing here holds a
lock while the API works (on SQLite the embedded engine writes to the same database and would
wait for it); the profile's row changes only by compare-and-set instead (`AssistantProfile`'s
`claim_remote`, `forget_remote`, `mark_synced`):

- A profile never gets two remote assistants. Whoever creates one records it only if the row
  still has none; the others delete the one they made and use the recorded one.
- One deleted on the API side is forgotten only if it is still the one recorded, so a
  replacement that another process made meanwhile stays.
- A push is marked synced only if the profile has not been edited since it was read; otherwise
  the newer version is pushed too, so an older push that lands last cannot leave stale fields
  marked in sync.
"""

from __future__ import annotations

import logging

from chat import assistants_api as api
from chat.models import AssistantProfile

log = logging.getLogger(__name__)

# Each retry means another process changed the profile meanwhile; past this, the next use retries.
ATTEMPTS = 3
GONE = "This assistant was deleted."
BUSY = "The assistant was being changed at the same time; try again."


def fields_of(profile: AssistantProfile) -> api.AssistantFields:
    return api.AssistantFields(
        name=profile.name,
        description=profile.description,
        model=profile.model,
        instructions=profile.instructions,
        file_search=profile.file_search,
        code_interpreter=profile.code_interpreter,
        functions=profile.functions,
        registry=[function.definition() for function in profile.registry_functions.all()],
        temperature=profile.temperature,
        top_p=profile.top_p,
        response_format=profile.response_format,
        metadata=profile.metadata or {},
        vector_store_id=profile.vector_store_id,
    )


def save(profile: AssistantProfile) -> str:
    """Create or update the profile's remote assistant and record it as synced; its id.

    AssistantsError if the API refuses or is away (the profile is left as it was). `profile` is
    reloaded from the database when another process changed it meanwhile.
    """
    for _ in range(ATTEMPTS):
        version = profile.updated_at
        assistant_id = profile.assistant_id
        if assistant_id:
            try:
                api.update_assistant(assistant_id, fields_of(profile))
            except api.NotFound:
                profile.forget_remote(assistant_id)  # deleted on the API side: make a new one
                reload(profile)
                continue
        else:
            assistant_id = api.create_assistant(fields_of(profile))
            if not profile.claim_remote(assistant_id):
                remove_unclaimed(assistant_id)
                reload(profile)
                continue
        if profile.mark_synced(assistant_id, version):
            return assistant_id
        reload(profile)  # edited meanwhile: push what it holds now
    raise api.AssistantsError(BUSY)


def remove_unclaimed(assistant_id: str) -> None:
    """Delete a remote assistant that lost the race to be recorded."""
    try:
        api.remove_assistant(assistant_id)
    except api.AssistantsError:
        log.warning("Could not delete remote assistant %s, made twice by a race", assistant_id)


def reload(profile: AssistantProfile) -> None:
    try:
        profile.refresh_from_db()
    except AssistantProfile.DoesNotExist:
        raise api.NotFound(GONE) from None

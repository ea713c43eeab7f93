"""Where the live answer streams from: served by Channels ahead of Django (config/asgi.py)."""

EVENTS_PATH = "c/<int:conversation_id>/runs/<str:run_id>/events"


def events_url(conversation_id: int, run_id: str) -> str:
    return f"/c/{conversation_id}/runs/{run_id}/events"

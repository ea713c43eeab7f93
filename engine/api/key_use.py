"""When each admin-made key was last used, written in the background, never by a request.

On SQLite a write waits for any write transaction in progress, and the request the engine
answers may be the one holding it (the admin's, saving an assistant, asks the embedded engine
for its models). So a request only notes the use here; a timer thread writes the notes a moment
later, and if that write waits, no one is waiting for it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from django.db import DatabaseError, connections

from engine.models import ApiKey

log = logging.getLogger(__name__)

FLUSH_AFTER_SECONDS = 2.0

_lock = threading.Lock()
_pending: dict[int, datetime] = {}
_timer: threading.Timer | None = None


def note(key_id: int, when: datetime) -> None:
    global _timer
    with _lock:
        _pending[key_id] = when
        if _timer is None:
            _timer = threading.Timer(FLUSH_AFTER_SECONDS, flush)
            _timer.daemon = True
            _timer.start()


def flush() -> None:
    """Write the noted uses; on the timer's thread, whose connections end with it."""
    global _timer
    with _lock:
        pending = dict(_pending)
        _pending.clear()
        _timer = None
    try:
        for key_id, when in pending.items():
            ApiKey.objects.filter(pk=key_id).update(last_used_at=when)
    except DatabaseError:
        log.warning("Could not record when %d API key(s) were last used", len(pending))
    finally:
        connections.close_all()  # this thread's: it ends now


def discard_pending() -> None:
    """Forget the uses not yet written, and their timer: for code that looks keys up in a
    process whose database goes away before the timer fires (tests)."""
    global _timer
    with _lock:
        if _timer is not None:
            _timer.cancel()
        _timer = None
        _pending.clear()

"""A full disk, told apart from other failures, so that it can be said as what it is."""

from __future__ import annotations

import errno

# SQLite's words for SQLITE_FULL; PostgreSQL's SQLSTATE for disk_full.
SQLITE_FULL = "database or disk is full"
POSTGRES_DISK_FULL = "53100"
NO_SPACE = {errno.ENOSPC, errno.EDQUOT}

API_MESSAGE = (
    "The server is out of disk space, so this request could not be stored. Nothing was kept; "
    "try again once an admin has freed space."
)
RUN_MESSAGE = (
    "The server ran out of disk space while answering, so the answer could not be saved. Try "
    "again once an admin has freed space."
)


def full(error: BaseException) -> bool:
    """Whether the error, or one it was raised from, says the disk (or the database) is full."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in NO_SPACE:
            return True
        if SQLITE_FULL in str(seen) or getattr(seen, "sqlstate", None) == POSTGRES_DISK_FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    return False

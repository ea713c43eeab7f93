"""Python functions the test servers offer (THREADLINE_PYTHON_FUNCTIONS names them)."""

from __future__ import annotations

import time
from typing import Any


def local_time(arguments: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answers with what it was given, so a test sees the arguments and the context arrive."""
    return {
        "city": arguments["city"],
        "time": "12:00",
        "asked_by": context.user.get_username(),
        "conversation": context.conversation_id,
    }


def explode(arguments: dict[str, Any], context: Any) -> str:
    raise ValueError("the sky fell")


def doze(arguments: dict[str, Any], context: Any) -> str:
    time.sleep(float(arguments.get("seconds", 5)))
    return "woke up"

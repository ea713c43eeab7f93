"""ASGI entry point: Django for HTTP, plus Channels for the chat's streaming endpoints."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.request_ids import with_request_ids
from config.request_threads import get_asgi_application
from config.server import receive_bodies_within_limits, with_spooled_bodies

receive_bodies_within_limits()
django_application = get_asgi_application()

from config.startup import require_redis  # noqa: E402
from engine.runs.lifecycle import start_upkeep  # noqa: E402

require_redis()
start_upkeep()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from chat.live.consumers import RunEventsConsumer  # noqa: E402
from chat.live.routing import EVENTS_PATH  # noqa: E402
from chat.tools.recovery import SweepingApplication  # noqa: E402

# The sweeper takes over the function calls that a dead process was answering (chat.tools).
application = SweepingApplication(
    with_request_ids(
        with_spooled_bodies(
            ProtocolTypeRouter(
                {
                    "http": URLRouter(
                        [
                            # A live answer's server-sent events. The session cookie says who
                            # is asking; the consumer itself checks that the conversation is
                            # theirs.
                            path(EVENTS_PATH, AuthMiddlewareStack(RunEventsConsumer.as_asgi())),
                            # Channels routes ASGI applications with Django's path helpers,
                            # which django-stubs types for views only.
                            re_path(r"", django_application),  # type: ignore[arg-type]
                        ]
                    )
                }
            )
        )
    )
)

# Everything loaded so far lives as long as the process: keep it out of the garbage collector's
# full passes, each of which walked all of it (over 100 ms, stalling every stream at once, several
# times during a burst of 200 sends).
gc.collect()
gc.freeze()

"""Give the chat frontend a key for the embedded engine, once, kept in a private file."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand

from engine.models import ApiKey, Project
from engine.rates import NO_LIMIT

# The chat limits each person itself (chat.limits); its key is not rate-limited by default.
FRONTEND_RATE_LIMIT = NO_LIMIT


class Command(BaseCommand):
    help = "Create the engine key the chat frontend uses, unless one is configured or exists."

    def handle(self, *args: object, **options: object) -> None:
        if settings.ASSISTANTS_KEY:
            return
        path = settings.ASSISTANTS_KEY_FILE
        existing = (
            ApiKey.objects.filter(
                key_hash=ApiKey.hash(path.read_text().strip()), revoked_at__isnull=True
            )
            if path.exists()
            else ApiKey.objects.none()
        )
        if existing.exists():
            # Keys made before rate limits existed: the chat limits people itself, and a
            # default meant for scripts must not throttle everyone's chat. A rate an admin set
            # on purpose stays.
            existing.filter(rate_limit="").update(rate_limit=FRONTEND_RATE_LIMIT)
            return
        # A project of the chat's own: no script's key reads its people's threads.
        _, plaintext = ApiKey.issue(Project.chat(), "Chat frontend", rate_limit=FRONTEND_RATE_LIMIT)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(plaintext + "\n")
        self.stdout.write(f"Created the chat frontend's engine key in {path}.")
